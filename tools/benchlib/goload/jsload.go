// JetStream modes of goload (roles js-pub, js-fetch, kv-put, kv-get), driven
// by tools/benchlib/jsbench.py over stdin/stdout:
//
//	setup (stream or bucket, prefill), then "ready"; wait for a line on
//	stdin; run the measured part; print "reached" (the server has answered
//	every request: the CPU window ends here); verify the outcome against the
//	server (stream or consumer state) and print one JSON line.
//
// js-pub publishes -n messages of -size bytes to the file stream BENCH with
// -inflight acknowledged publishes outstanding (1 = synchronous, each
// latency recorded); js-fetch drains a prefilled stream with a durable pull
// consumer (Fetch of -batch, an explicit Ack per message, then a flush so the
// server has read every ack); kv-put puts -n values into 1,000 keys of bucket
// BENCH, one at a time; kv-get reads them back -n times, one at a time.
package main

import (
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
)

type jsResult struct {
	Msgs   int64    `json:"msgs"`
	Errors []string `json:"errors"`
	P50us  float64  `json:"p50_us,omitempty"`
	P99us  float64  `json:"p99_us,omitempty"`
	Check  string   `json:"check"`
}

type jsRun struct {
	nc       *nats.Conn
	js       nats.JetStreamContext
	n        int64
	size     int
	inflight int
	batch    int
	timeout  time.Duration
	res      jsResult
	lat      []time.Duration
}

func jsMain(role string, nc *nats.Conn, n int64, size, inflight, batch int, timeout time.Duration,
	wait func(), reached func(), emit func(interface{})) {
	pending := inflight
	if role != "js-pub" {
		pending = 256 // js-fetch's prefill
	}
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(pending), nats.MaxWait(timeout))
	if err != nil {
		fail("jetstream: %v", err)
	}
	r := &jsRun{nc: nc, js: js, n: n, size: size, inflight: inflight, batch: batch, timeout: timeout}
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	var run, verify func()
	switch role {
	case "js-pub":
		r.stream()
		run = func() { r.publish(payload) }
		verify = func() { r.streamCount(n) }
	case "js-fetch":
		r.stream()
		r.prefill(payload)
		sub, err := js.PullSubscribe("bench.js", "PULL", nats.AckExplicit(), nats.BindStream("BENCH"))
		if err != nil {
			fail("pull subscribe: %v", err)
		}
		run = func() { r.fetch(sub) }
		verify = func() { r.consumerDone() }
	case "kv-put", "kv-get":
		kv, err := js.CreateKeyValue(&nats.KeyValueConfig{Bucket: "BENCH", Storage: nats.FileStorage})
		if err != nil {
			fail("create bucket: %v", err)
		}
		if role == "kv-put" {
			run = func() { r.kvPut(kv, payload) }
			verify = func() { r.kvCheck(kv, payload, int64(1000)) }
		} else {
			for i := 0; i < 1000; i++ {
				if _, err := kv.Put(fmt.Sprintf("k%d", i), payload); err != nil {
					fail("prefill put: %v", err)
				}
			}
			run = func() { r.kvGet(kv, payload) }
			verify = func() {}
		}
	default:
		fail("unknown role %s", role)
	}
	if err := nc.FlushTimeout(timeout); err != nil {
		fail("flush: %v", err)
	}
	wait()
	run()
	reached()
	if len(r.res.Errors) == 0 {
		verify()
	}
	if len(r.lat) > 0 {
		sort.Slice(r.lat, func(i, j int) bool { return r.lat[i] < r.lat[j] })
		r.res.P50us = float64(r.lat[len(r.lat)/2].Nanoseconds()) / 1000
		r.res.P99us = float64(r.lat[len(r.lat)*99/100].Nanoseconds()) / 1000
	}
	emit(r.res)
}

func (r *jsRun) err(format string, a ...interface{}) {
	if len(r.res.Errors) < 10 {
		r.res.Errors = append(r.res.Errors, fmt.Sprintf(format, a...))
	}
}

func (r *jsRun) stream() {
	_, err := r.js.AddStream(&nats.StreamConfig{Name: "BENCH", Subjects: []string{"bench.js"},
		Storage: nats.FileStorage})
	if err != nil {
		fail("add stream: %v", err)
	}
}

func (r *jsRun) publish(payload []byte) {
	if r.inflight <= 1 {
		r.lat = make([]time.Duration, 0, r.n)
		for i := int64(0); i < r.n; i++ {
			t := time.Now()
			ack, err := r.js.Publish("bench.js", payload)
			r.lat = append(r.lat, time.Since(t))
			if err != nil || ack.Sequence != uint64(i+1) {
				r.err("publish %d: %v %+v", i, err, ack)
				return
			}
			r.res.Msgs++
		}
		return
	}
	futures := make([]nats.PubAckFuture, 0, r.n)
	for i := int64(0); i < r.n; i++ {
		f, err := r.js.PublishAsync("bench.js", payload)
		if err != nil {
			r.err("publish async %d: %v", i, err)
			return
		}
		futures = append(futures, f)
	}
	select {
	case <-r.js.PublishAsyncComplete():
	case <-time.After(r.timeout):
		r.err("acks not all back in %v", r.timeout)
		return
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Sequence == 0 {
				r.err("ack %d without a sequence", i)
			}
			r.res.Msgs++
		case e := <-f.Err():
			r.err("ack %d: %v", i, e)
		}
	}
}

func (r *jsRun) prefill(payload []byte) {
	for i := int64(0); i < r.n; i++ {
		if _, err := r.js.PublishAsync("bench.js", payload); err != nil {
			fail("prefill: %v", err)
		}
	}
	select {
	case <-r.js.PublishAsyncComplete():
	case <-time.After(r.timeout):
		fail("prefill acks not back")
	}
	r.streamCount(r.n)
	if len(r.res.Errors) > 0 {
		fail("prefill: %v", r.res.Errors)
	}
}

func (r *jsRun) streamCount(want int64) {
	si, err := r.js.StreamInfo("BENCH")
	if err != nil {
		r.err("stream info: %v", err)
		return
	}
	r.res.Check = fmt.Sprintf("stream has %d msgs, %d bytes", si.State.Msgs, si.State.Bytes)
	if int64(si.State.Msgs) != want {
		r.err("stream has %d messages, want %d", si.State.Msgs, want)
	}
}

func (r *jsRun) fetch(sub *nats.Subscription) {
	seen := make(map[uint64]bool, r.n)
	deadline := time.Now().Add(r.timeout)
	for r.res.Msgs < r.n && time.Now().Before(deadline) {
		msgs, err := sub.Fetch(r.batch, nats.MaxWait(10*time.Second))
		if err != nil {
			r.err("fetch: %v", err)
			return
		}
		for _, m := range msgs {
			md, err := m.Metadata()
			if err != nil || seen[md.Sequence.Stream] || len(m.Data) != r.size {
				r.err("bad or repeated message %v %v", err, md)
				return
			}
			seen[md.Sequence.Stream] = true
			if err := m.Ack(); err != nil {
				r.err("ack: %v", err)
				return
			}
			r.res.Msgs++
		}
	}
	// The PONG comes after the server has read (and handled) every ack.
	if err := r.nc.FlushTimeout(r.timeout); err != nil {
		r.err("flush: %v", err)
	}
}

func (r *jsRun) consumerDone() {
	ci, err := r.js.ConsumerInfo("BENCH", "PULL")
	if err != nil {
		r.err("consumer info: %v", err)
		return
	}
	r.res.Check = fmt.Sprintf("ack floor %d, ack pending %d, redelivered %d",
		ci.AckFloor.Stream, ci.NumAckPending, ci.NumRedelivered)
	if ci.AckFloor.Stream != uint64(r.n) || ci.NumAckPending != 0 || ci.NumRedelivered != 0 {
		r.err("consumer after the run: %s", r.res.Check)
	}
}

func (r *jsRun) kvPut(kv nats.KeyValue, payload []byte) {
	r.lat = make([]time.Duration, 0, r.n)
	for i := int64(0); i < r.n; i++ {
		t := time.Now()
		rev, err := kv.Put(fmt.Sprintf("k%d", i%1000), payload)
		r.lat = append(r.lat, time.Since(t))
		if err != nil || rev != uint64(i+1) {
			r.err("put %d: rev %d %v", i, rev, err)
			return
		}
		r.res.Msgs++
	}
}

func (r *jsRun) kvCheck(kv nats.KeyValue, payload []byte, keys int64) {
	si, err := r.js.StreamInfo("KV_BENCH")
	if err != nil {
		r.err("stream info: %v", err)
		return
	}
	want := keys
	if r.n < keys {
		want = r.n
	}
	r.res.Check = fmt.Sprintf("bucket stream holds %d msgs (history 1), last seq %d", si.State.Msgs, si.State.LastSeq)
	if int64(si.State.Msgs) != want || int64(si.State.LastSeq) != r.n {
		r.err("bucket after the run: %s", r.res.Check)
	}
}

func (r *jsRun) kvGet(kv nats.KeyValue, payload []byte) {
	r.lat = make([]time.Duration, 0, r.n)
	for i := int64(0); i < r.n; i++ {
		t := time.Now()
		e, err := kv.Get(fmt.Sprintf("k%d", i%1000))
		r.lat = append(r.lat, time.Since(t))
		if err != nil || len(e.Value()) != len(payload) || e.Revision() != uint64(i%1000+1) {
			r.err("get %d: %v", i, err)
			return
		}
		r.res.Msgs++
	}
	r.res.Check = "every value and revision as put"
}
