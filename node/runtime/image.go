package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/remotes"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
)

// PullPolicy is a Kubernetes image pull policy; the values are
// corev1.PullPolicy's, so `PullPolicy(c.ImagePullPolicy)` converts.
type PullPolicy string

const (
	PullAlways       PullPolicy = "Always"
	PullIfNotPresent PullPolicy = "IfNotPresent"
	PullNever        PullPolicy = "Never"
)

// Errors the kubelet maps to Kubernetes' waiting reasons.
var (
	// ErrImagePull: a registry pull failed (reason ErrImagePull, then
	// ImagePullBackOff).
	ErrImagePull = errors.New("image pull failed")
	// ErrImageNeverPull: the policy is Never and the image is not present
	// (reason ErrImageNeverPull).
	ErrImageNeverPull = errors.New("image not present and pull policy is Never")
	// ErrInvalidImageName: the reference does not parse (reason
	// InvalidImageName).
	ErrInvalidImageName = errors.New("invalid image name")
)

// Image describes an image in containerd's store.
type Image struct {
	// Name is the normalized reference, e.g. docker.io/library/busybox:1.
	Name string
	// ID is the image config digest (what CRI runtimes report as imageID).
	ID string
	// Size is the unpacked-content size in bytes as containerd reports it.
	Size int64
}

// NormalizeImage turns a Kubernetes image string ("busybox",
// "busybox:1.36", "registry:5000/x@sha256:...") into the fully qualified
// name containerd stores (docker.io/library/busybox:latest, ...).
func NormalizeImage(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrInvalidImageName, ref, err)
	}
	return named.String(), nil
}

// ImportImage imports a docker-save or OCI-layout tarball, unpacks it for
// overlayfs and returns the names of the images it contained.
func (r *Runtime) ImportImage(ctx context.Context, rd io.Reader) (names []string, err error) {
	defer r.metrics.observe("import_image", time.Now(), &err)
	ctx = r.nsCtx(ctx)
	imgs, err := r.client.Import(ctx, rd,
		containerd.WithImportPlatform(platforms.Default()),
		// An OCI archive may name its image only by the OCI ref-name
		// annotation: accept it if it is a full reference ("busybox:1",
		// "registry/x:y"), not a bare tag ("latest"), which names no
		// repository.
		containerd.WithImageRefTranslator(func(name string) string {
			if !strings.ContainsAny(name, "/:@") {
				return ""
			}
			n, err := NormalizeImage(name)
			if err != nil {
				return ""
			}
			return n
		}))
	if err != nil {
		return nil, fmt.Errorf("runtime: import image: %w", err)
	}
	if len(imgs) == 0 {
		return nil, errors.New("runtime: import image: the archive names no image (an OCI archive needs the io.containerd.image.name annotation or a full reference as org.opencontainers.image.ref.name)")
	}
	for _, img := range imgs {
		i := containerd.NewImageWithPlatform(r.client, img, platforms.Default())
		if err := i.Unpack(ctx, Snapshotter); err != nil {
			return nil, fmt.Errorf("runtime: unpack imported image %s: %w", img.Name, err)
		}
		names = append(names, img.Name)
	}
	r.log.Info("imported images", "images", names)
	return names, nil
}

// PullImage pulls ref from its registry and unpacks it. Connections time
// out after 5 s and the whole pull after Config.PullTimeout, so an
// unreachable registry fails fast; the error wraps ErrImagePull.
func (r *Runtime) PullImage(ctx context.Context, ref string) (img Image, err error) {
	defer r.metrics.observe("pull_image", time.Now(), &err)
	name, err := NormalizeImage(ref)
	if err != nil {
		return Image{}, err
	}
	ctx, cancel := context.WithTimeout(r.nsCtx(ctx), r.pullTimeout)
	defer cancel()
	start := time.Now()
	pulled, err := r.client.Pull(ctx, name,
		containerd.WithResolver(r.resolver()),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(Snapshotter),
		containerd.WithPlatformMatcher(platforms.Default()))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s: %w", r.pullTimeout, err)
		}
		return Image{}, fmt.Errorf("%w: %s: %v", ErrImagePull, name, err)
	}
	r.log.Info("pulled image", "image", name, "duration", time.Since(start))
	return r.describe(ctx, pulled)
}

// resolver talks to registries with bounded connection and header
// timeouts; localhost registries are plain HTTP (as Docker treats them).
func (r *Runtime) resolver() remotes.Resolver {
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConns:          10,
		IdleConnTimeout:       30 * time.Second,
	}
	return docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(
			docker.WithClient(&http.Client{Transport: transport}),
			docker.WithPlainHTTP(docker.MatchLocalhost),
		),
	})
}

// GetImage returns the image named ref (normalized) if it is in the
// store; the error wraps errdefs.ErrNotFound otherwise.
func (r *Runtime) GetImage(ctx context.Context, ref string) (Image, error) {
	name, err := NormalizeImage(ref)
	if err != nil {
		return Image{}, err
	}
	ctx = r.nsCtx(ctx)
	img, err := r.client.GetImage(ctx, name)
	if err != nil {
		return Image{}, fmt.Errorf("runtime: image %s: %w", name, err)
	}
	return r.describe(ctx, img)
}

// EnsureImage makes ref available according to the pull policy:
// IfNotPresent (and "") pulls only a missing image, Always pulls every
// time, Never fails with ErrImageNeverPull for a missing image. A present
// image that is not unpacked yet is unpacked.
func (r *Runtime) EnsureImage(ctx context.Context, ref string, policy PullPolicy) (Image, error) {
	name, err := NormalizeImage(ref)
	if err != nil {
		return Image{}, err
	}
	if policy == PullAlways {
		return r.PullImage(ctx, name)
	}
	ctx = r.nsCtx(ctx)
	img, err := r.client.GetImage(ctx, name)
	switch {
	case errdefs.IsNotFound(err) && policy == PullNever:
		return Image{}, fmt.Errorf("%w: %s", ErrImageNeverPull, name)
	case errdefs.IsNotFound(err):
		return r.PullImage(ctx, name)
	case err != nil:
		return Image{}, fmt.Errorf("runtime: image %s: %w", name, err)
	}
	unpacked, err := img.IsUnpacked(ctx, Snapshotter)
	if err != nil {
		return Image{}, fmt.Errorf("runtime: image %s: %w", name, err)
	}
	if !unpacked {
		if err := img.Unpack(ctx, Snapshotter); err != nil {
			return Image{}, fmt.Errorf("runtime: unpack %s: %w", name, err)
		}
	}
	return r.describe(ctx, img)
}

// ListImages lists the images in the namespace (for the Node's
// status.images).
func (r *Runtime) ListImages(ctx context.Context) ([]Image, error) {
	ctx = r.nsCtx(ctx)
	imgs, err := r.client.ListImages(ctx)
	if err != nil {
		return nil, fmt.Errorf("runtime: list images: %w", err)
	}
	out := make([]Image, 0, len(imgs))
	for _, img := range imgs {
		d, err := r.describe(ctx, img)
		if err != nil {
			continue // e.g. an image whose content is for another platform
		}
		out = append(out, d)
	}
	return out, nil
}

// RemoveImage deletes an image name (its content is garbage-collected by
// containerd once no name or container refers to it).
func (r *Runtime) RemoveImage(ctx context.Context, ref string) error {
	name, err := NormalizeImage(ref)
	if err != nil {
		return err
	}
	if err := r.client.ImageService().Delete(r.nsCtx(ctx), name); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("runtime: remove image %s: %w", name, err)
	}
	return nil
}

func (r *Runtime) describe(ctx context.Context, img containerd.Image) (Image, error) {
	conf, err := img.Config(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("runtime: image %s config: %w", img.Name(), err)
	}
	size, err := img.Size(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("runtime: image %s size: %w", img.Name(), err)
	}
	return Image{Name: img.Name(), ID: conf.Digest.String(), Size: size}, nil
}
