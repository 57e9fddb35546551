package kubeletserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	"k8s.io/apimachinery/pkg/util/remotecommand"

	"synod/node/runtime"
)

// The channels of the remotecommand WebSocket protocols.
const (
	stdinChannel = iota
	stdoutChannel
	stderrChannel
	errorChannel
	resizeChannel
)

// execIdleTimeout closes an exec session nobody has used for this long, as
// the kubelet's --streaming-connection-idle-timeout (4 h) does.
const execIdleTimeout = 4 * time.Hour

// execOptions are the query parameters of /exec.
type execOptions struct {
	cmd                        []string
	stdin, stdout, stderr, tty bool
}

func parseExecOptions(r *http.Request) (execOptions, error) {
	q := r.URL.Query()
	o := execOptions{cmd: q["command"]}
	for name, p := range map[string]*bool{"stdin": &o.stdin, "stdout": &o.stdout, "stderr": &o.stderr, "tty": &o.tty} {
		if v := q.Get(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return o, fmt.Errorf("invalid %s %q", name, v)
			}
			*p = b
		}
	}
	switch {
	case len(o.cmd) == 0:
		return o, fmt.Errorf("you must specify at least one command for the container")
	case !o.stdin && !o.stdout && !o.stderr:
		return o, fmt.Errorf("you must specify at least 1 of stdin, stdout, stderr")
	case o.tty && o.stderr:
		// kubectl sends stderr=false with a TTY; a TTY merges the streams.
		o.stderr = false
	}
	return o, nil
}

func channelType(on bool, t wsstream.ChannelType) wsstream.ChannelType {
	if on {
		return t
	}
	return wsstream.IgnoreChannel
}

// serveExec runs a command in a container over a remotecommand WebSocket.
func (s *Server) serveExec(w http.ResponseWriter, r *http.Request, ns, pod, container string) {
	o, err := parseExecOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !wsstream.IsWebSocketRequest(r) {
		// Refusing the upgrade is what makes kubectl fall back to SPDY,
		// which it would then fail with; say so plainly.
		http.Error(w, "exec needs a WebSocket upgrade (remotecommand v5.channel.k8s.io); SPDY is not served", http.StatusBadRequest)
		return
	}
	c, ok := s.find(w, r, ns, pod, container, false)
	if !ok {
		return
	}
	if c.Phase != runtime.Running {
		http.Error(w, fmt.Sprintf("container %q in pod %q is not running", container, pod), http.StatusBadRequest)
		return
	}
	channels := []wsstream.ChannelType{
		stdinChannel:  channelType(o.stdin, wsstream.ReadChannel),
		stdoutChannel: channelType(o.stdout, wsstream.WriteChannel),
		stderrChannel: channelType(o.stderr, wsstream.WriteChannel),
		errorChannel:  wsstream.WriteChannel,
		resizeChannel: wsstream.ReadChannel,
	}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		"":                                 {Binary: true, Channels: channels},
		"channel.k8s.io":                   {Binary: true, Channels: channels},
		"base64.channel.k8s.io":            {Binary: false, Channels: channels},
		remotecommand.StreamProtocolV4Name: {Binary: true, Channels: channels},
		"v4.base64.channel.k8s.io":         {Binary: false, Channels: channels},
		remotecommand.StreamProtocolV5Name: {Binary: true, Channels: channels},
	})
	conn.SetIdleTimeout(execIdleTimeout)
	_, streams, err := conn.Open(w, r)
	if err != nil {
		s.log.Debug("exec: websocket handshake", "err", err)
		return
	}
	defer conn.Close()

	// The process is killed when the client goes away (kubectl killed, a
	// dropped connection), not left running with nobody to read it.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	resize := make(chan runtime.TermSize, 1)
	// The resize channel is read even without a TTY: an unread channel
	// would stall the connection's reader, and with it stdin. Clients
	// never close it, so its end is the connection's end.
	go func() {
		decodeResizes(ctx, streams[resizeChannel], resize)
		cancel()
	}()
	opts := runtime.ExecOptions{Cmd: o.cmd, TTY: o.tty, Resize: resize}
	if o.stdin {
		opts.Stdin = streams[stdinChannel]
	}
	if o.stdout {
		opts.Stdout = streams[stdoutChannel]
	}
	if o.stderr {
		opts.Stderr = streams[stderrChannel]
	}
	code, err := s.cfg.Runtime.ExecStream(ctx, c.ID, opts)
	st := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess}
	switch {
	case err != nil:
		st.Status, st.Message = metav1.StatusFailure, fmt.Sprintf("exec in container %q of pod %q: %v", container, pod, err)
		st.Reason, st.Code = metav1.StatusReasonInternalError, http.StatusInternalServerError
	case code != 0:
		st.Status = metav1.StatusFailure
		st.Reason = remotecommand.NonZeroExitCodeReason
		st.Message = fmt.Sprintf("command terminated with non-zero exit code: error executing command %v, exit code %d", o.cmd, code)
		st.Details = &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: remotecommand.ExitCodeCauseType, Message: strconv.Itoa(code)}}}
	}
	b, _ := json.Marshal(st)
	if _, err := streams[errorChannel].Write(b); err != nil {
		s.log.Debug("exec: write status", "err", err)
	}
}

// decodeResizes reads the client's JSON {"Width":..,"Height":..} frames
// until the connection closes (or a frame is not JSON). It never closes out: the runtime selects on
// it, and a closed channel would read as endless zero sizes.
func decodeResizes(ctx context.Context, r io.Reader, out chan<- runtime.TermSize) {
	d := json.NewDecoder(r)
	for {
		var sz runtime.TermSize
		if err := d.Decode(&sz); err != nil {
			return
		}
		select {
		case out <- sz:
		case <-ctx.Done():
			return
		}
	}
}
