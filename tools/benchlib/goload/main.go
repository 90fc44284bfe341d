// goload: one publisher or one subscriber on the nats.go client, driven by
// tools/benchlib/clients.py over stdin/stdout so tools/bench.py can measure a
// server through the Go client library, as Go applications use it.
//
// Protocol: the program connects (and subscribes), confirms with a flush
// (PING/PONG) and prints "ready". It waits for a line on stdin, then runs:
//
//	pub: publishes -n messages of -size bytes on -subject, flushes (the PONG
//	     proves the server has read every PUB) and prints its result;
//	sub: counts messages and payload bytes until -n have arrived, prints
//	     "reached", flushes (anything already on its way arrives before the
//	     PONG), lets the callback drain and prints its result, so a surplus
//	     (duplicate) message is counted too.
//
// The result is one JSON line. Errors the client reports asynchronously (slow
// consumer, disconnect) are collected and returned, never retried: the
// connection does not reconnect, so a server that cuts it shows as a failure.
//
// The JetStream roles (js-pub, js-fetch, kv-put, kv-get) are in jsload.go.
//
// Built at bench time in GOPATH mode against Debian's
// golang-github-nats-io-go-nats-dev (see clients.py): standard library and
// nats.go only.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

type result struct {
	Sent     int64    `json:"sent,omitempty"`
	Msgs     int64    `json:"msgs"`
	Bytes    int64    `json:"bytes"`
	TimedOut bool     `json:"timed_out"`
	Errors   []string `json:"errors"`
}

type errlog struct {
	mu   sync.Mutex
	errs []string
}

func (e *errlog) add(s string) {
	e.mu.Lock()
	if len(e.errs) < 10 {
		e.errs = append(e.errs, s)
	}
	e.mu.Unlock()
}

func (e *errlog) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string{}, e.errs...)
}

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "goload: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	role := flag.String("role", "", "pub or sub")
	url := flag.String("url", "", "server URL")
	subject := flag.String("subject", "", "subject")
	size := flag.Int("size", 16, "payload size (pub)")
	n := flag.Int64("n", 0, "messages to publish or to receive")
	timeout := flag.Duration("timeout", 60*time.Second, "time allowed for the run")
	inflight := flag.Int("inflight", 1, "JetStream publishes outstanding (js-pub)")
	batch := flag.Int("batch", 100, "messages per Fetch (js-fetch)")
	flag.Parse()

	var elog errlog
	closed := make(chan struct{}) // the server cut us: stop waiting for messages
	nc, err := nats.Connect(*url, nats.Name("bench-go"), nats.NoReconnect(),
		nats.ClosedHandler(func(_ *nats.Conn) { close(closed) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, e error) { elog.add(e.Error()) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, e error) {
			if e != nil {
				elog.add("disconnected: " + e.Error())
			}
		}))
	if err != nil {
		fail("connect: %v", err)
	}
	defer nc.Close()
	if *role != "pub" && *role != "sub" {
		out := bufio.NewWriter(os.Stdout)
		say := func(line string) { fmt.Fprintln(out, line); out.Flush() }
		jsMain(*role, nc, *n, *size, *inflight, *batch, *timeout,
			func() {
				say("ready")
				if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
					fail("no start line: %v", err)
				}
			},
			func() { say("reached") },
			func(v interface{}) {
				line, _ := json.Marshal(v)
				say(string(line))
			})
		return
	}

	var msgs, nbytes int64
	reached := make(chan struct{})
	var sub *nats.Subscription
	if *role == "sub" {
		target := *n
		sub, err = nc.Subscribe(*subject, func(m *nats.Msg) {
			atomic.AddInt64(&nbytes, int64(len(m.Data)))
			if atomic.AddInt64(&msgs, 1) == target {
				close(reached)
			}
		})
		if err != nil {
			fail("subscribe: %v", err)
		}
		// The client's own pending limits would drop messages: counting needs every one.
		if err = sub.SetPendingLimits(-1, -1); err != nil {
			fail("pending limits: %v", err)
		}
	} else if *role != "pub" {
		fail("-role must be pub or sub")
	}
	if err = nc.FlushTimeout(*timeout); err != nil {
		fail("flush: %v", err)
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	if _, err = bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fail("no start line: %v", err)
	}

	res := result{}
	if *role == "pub" {
		payload := make([]byte, *size)
		for i := range payload {
			payload[i] = byte('a' + i%26)
		}
		for i := int64(0); i < *n; i++ {
			if err = nc.Publish(*subject, payload); err != nil {
				elog.add("publish: " + err.Error())
				break
			}
			res.Sent++
		}
		if err = nc.FlushTimeout(*timeout); err != nil {
			elog.add("final flush: " + err.Error())
		}
	} else {
		select {
		case <-reached:
			fmt.Fprintln(out, "reached")
			out.Flush()
		case <-closed:
		case <-time.After(*timeout):
			res.TimedOut = true
		}
		if err = nc.FlushTimeout(10 * time.Second); err != nil {
			elog.add("final flush: " + err.Error())
		}
		// Messages read before the PONG may still sit in the subscription's
		// queue, or be in the callback: wait until every one handed over has
		// been counted.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			pending, _, perr := sub.Pending()
			delivered, derr := sub.Delivered()
			if perr != nil || derr != nil || (pending == 0 && delivered == atomic.LoadInt64(&msgs)) {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	res.Msgs = atomic.LoadInt64(&msgs)
	res.Bytes = atomic.LoadInt64(&nbytes)
	res.Errors = elog.list()
	line, _ := json.Marshal(res)
	fmt.Fprintln(out, string(line))
	out.Flush()
}
