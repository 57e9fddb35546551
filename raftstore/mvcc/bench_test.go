package mvcc

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestConcurrentReaders is mostly for -race: readers and views run while
// the single writer applies puts and compactions.
func TestConcurrentReaders(t *testing.T) {
	s := New()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := int64(1)
			for {
				select {
				case <-stop:
					return
				default:
				}
				ch := s.Changed()
				if _, err := s.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Limit: 5}); err != nil {
					t.Error(err)
					return
				}
				_, n, err := s.Events(next, nil, []byte{0}, 10)
				if err != nil {
					next = s.CompactRev() + 1 // compacted under us: resync
					continue
				}
				next = n
				select {
				case <-ch:
				case <-stop:
					return
				}
			}
		}()
	}
	for i := 0; i < 2000; i++ {
		mustPut(t, s, fmt.Sprint("k", i%50), fmt.Sprint(i), 0)
		if i%100 == 99 {
			if err := s.Compact(s.Rev() - 10); err != nil {
				t.Fatal(err)
			}
			v := s.View()
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf bytes.Buffer
				if _, err := v.WriteTo(&buf); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	close(stop)
	wg.Wait()
}

func BenchmarkPut(b *testing.B) {
	s := New()
	val := bytes.Repeat([]byte("x"), 256)
	keys := make([][]byte, 10000)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("/registry/pods/default/pod-%05d", i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Put(&pb.PutRequest{Key: keys[i%len(keys)], Value: val}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRange(b *testing.B) {
	s := New()
	val := bytes.Repeat([]byte("x"), 256)
	for i := 0; i < 10000; i++ {
		mustPut(b, s, fmt.Sprintf("/registry/pods/ns%02d/pod-%05d", i%20, i), string(val), 0)
	}
	req := &pb.RangeRequest{Key: []byte("/registry/pods/ns07/"), RangeEnd: []byte("/registry/pods/ns070"), Limit: 100}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := s.Range(req)
		if err != nil || len(resp.Kvs) != 100 {
			b.Fatal(len(resp.Kvs), err)
		}
	}
}
