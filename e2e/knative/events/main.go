// kn-events: Knative Eventing's delivery code and the CloudEvents Go SDK against a function.
//
//	kn-events deliver -target URL -event JSON [-reply] [-dls] [-retry N] [-format json]
//	    Sends the event with knative.dev/eventing's kncloudevents.Dispatcher (the delivery code of
//	    the in-memory channel, the broker filter and the sources), with a reply sink and/or a
//	    dead-letter sink served by this program, and prints as JSON what the dispatch returned and
//	    what each sink received (headers in canonical form, body as text).
//	kn-events read -target URL -mode binary|structured|batch -event JSON (a JSON array for batch)
//	    Sends the event(s) with github.com/cloudevents/sdk-go/v2 and decodes the reply with it,
//	    printing each decoded event's attributes, extensions and data as JSON.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	eventingduck "knative.dev/eventing/pkg/apis/duck/v1"
	"knative.dev/eventing/pkg/eventingtls"
	"knative.dev/eventing/pkg/kncloudevents"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kn-events: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: kn-events deliver|read [flags]")
	}
	switch os.Args[1] {
	case "deliver":
		deliver(os.Args[2:])
	case "read":
		read(os.Args[2:])
	default:
		fail("unknown command %q", os.Args[1])
	}
}

// ---- deliver: kncloudevents.Dispatcher with reply and dead-letter sinks ---------------------------

type received struct {
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

type sink struct {
	mu   sync.Mutex
	got  []received
	addr *duckv1.Addressable
}

func newSink() *sink {
	s := &sink{got: []received{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h := map[string]string{}
		for k := range r.Header {
			h[k] = r.Header.Get(k)
		}
		s.mu.Lock()
		s.got = append(s.got, received{h, string(body)})
		s.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	s.addr = &duckv1.Addressable{URL: apis.HTTP(ln.Addr().String())}
	return s
}

func parseEvent(text string) event.Event {
	e := event.New()
	if err := json.Unmarshal([]byte(text), &e); err != nil {
		fail("bad -event: %v", err)
	}
	return e
}

func deliver(args []string) {
	fs := flag.NewFlagSet("deliver", flag.ExitOnError)
	target := fs.String("target", "", "URL of the function")
	eventJSON := fs.String("event", "", "the event, as structured-mode JSON")
	withReply := fs.Bool("reply", false, "forward the function's reply to a reply sink")
	withDLS := fs.Bool("dls", false, "dead-letter failed deliveries to a sink")
	retry := fs.Int("retry", 0, "retries (linear backoff, 100 ms)")
	format := fs.String("format", "", "event format on the wire: json (structured) or binary (default)")
	fs.Parse(args)
	if os.Getenv("SYSTEM_NAMESPACE") == "" {
		os.Setenv("SYSTEM_NAMESPACE", "knative-eventing") // kncloudevents panics without it
	}
	u, err := apis.ParseURL(*target)
	if err != nil || *target == "" {
		fail("bad -target %q: %v", *target, err)
	}
	ev := parseEvent(*eventJSON)

	var opts []kncloudevents.SendOption
	reply, dls := newSink(), newSink()
	if *withReply {
		opts = append(opts, kncloudevents.WithReply(reply.addr))
	}
	if *withDLS {
		opts = append(opts, kncloudevents.WithDeadLetterSink(dls.addr))
	}
	if *retry > 0 {
		linear, delay, n := eventingduck.BackoffPolicyLinear, "PT0.1S", int32(*retry)
		rc, err := kncloudevents.RetryConfigFromDeliverySpec(eventingduck.DeliverySpec{
			Retry: &n, BackoffPolicy: &linear, BackoffDelay: &delay})
		if err != nil {
			fail("retry config: %v", err)
		}
		opts = append(opts, kncloudevents.WithRetryConfig(&rc))
	}
	if *format == "json" {
		f := eventingduck.DeliveryFormatJson
		opts = append(opts, kncloudevents.WithEventFormat(&f))
	}
	// Count the function's attempts through a counting proxy in front of it.
	attempts, statuses := 0, []int{}
	var amu sync.Mutex
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		amu.Lock()
		attempts++
		amu.Unlock()
		body, _ := io.ReadAll(r.Body)
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, u.String()+r.URL.Path, bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		amu.Lock()
		statuses = append(statuses, resp.StatusCode)
		amu.Unlock()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	dest := duckv1.Addressable{URL: apis.HTTP(ln.Addr().String())}
	dest.URL.Path = u.Path

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	info, err := kncloudevents.NewDispatcher(eventingtls.ClientConfig{}, nil).SendEvent(ctx, ev, dest, opts...)
	// response_code/response_body: kncloudevents' DispatchInfo of the last request it made.
	out := map[string]any{"error": nil}
	if err != nil {
		out["error"] = err.Error()
	}
	if info != nil {
		out["response_code"] = info.ResponseCode
		out["response_body"] = string(info.ResponseBody)
	}
	reply.mu.Lock()
	dls.mu.Lock()
	out["reply"], out["dead_letter"] = reply.got, dls.got
	amu.Lock()
	out["attempts"], out["function_statuses"] = attempts, statuses
	json.NewEncoder(os.Stdout).Encode(out)
}

// ---- read: the CloudEvents Go SDK decodes the function's reply --------------------------------------

type decoded struct {
	ID              string         `json:"id"`
	Source          string         `json:"source"`
	Type            string         `json:"type"`
	Subject         string         `json:"subject"`
	DataContentType string         `json:"datacontenttype"`
	Extensions      map[string]any `json:"extensions"`
	Data            string         `json:"data"`
}

func decode(e *event.Event) decoded {
	ext := map[string]any{}
	for k, v := range e.Extensions() {
		ext[k] = v
	}
	return decoded{e.ID(), e.Source(), e.Type(), e.Subject(), e.DataContentType(), ext, string(e.Data())}
}

func read(args []string) {
	fs := flag.NewFlagSet("read", flag.ExitOnError)
	target := fs.String("target", "", "URL of the function")
	mode := fs.String("mode", "binary", "binary, structured or batch")
	eventJSON := fs.String("event", "", "the event (structured-mode JSON; a JSON array for batch)")
	fs.Parse(args)
	ctx := context.Background()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, *target, nil)
	if err != nil {
		fail("bad -target: %v", err)
	}
	switch *mode {
	case "binary", "structured":
		e := parseEvent(*eventJSON)
		wctx := ctx
		if *mode == "structured" {
			wctx = binding.WithForceStructured(ctx)
		} else {
			wctx = binding.WithForceBinary(ctx)
		}
		if err := cehttp.WriteRequest(wctx, binding.ToMessage(&e), req); err != nil {
			fail("write request: %v", err)
		}
	case "batch":
		var events []event.Event
		if err := json.Unmarshal([]byte(*eventJSON), &events); err != nil {
			fail("bad -event batch: %v", err)
		}
		if req, err = cehttp.NewHTTPRequestFromEvents(ctx, *target, events); err != nil {
			fail("batch request: %v", err)
		}
	default:
		fail("unknown -mode %q", *mode)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fail("request: %v", err)
	}
	out := map[string]any{"status": resp.StatusCode, "content_type": resp.Header.Get("Content-Type"),
		// sdk-go's own batch test compares the whole Content-Type (parameters included).
		"sdk_is_http_batch": cehttp.IsHTTPBatch(resp.Header)}
	events := []decoded{}
	msg := cehttp.NewMessageFromHttpResponse(resp)
	switch msg.ReadEncoding() {
	case binding.EncodingBatch:
		out["mode"] = "batch"
		batch, err := binding.ToEvents(ctx, msg, msg.BodyReader)
		if err != nil {
			fail("decode batch reply: %v", err)
		}
		for i := range batch {
			events = append(events, decode(&batch[i]))
		}
	case binding.EncodingBinary, binding.EncodingStructured:
		out["mode"] = map[binding.Encoding]string{binding.EncodingBinary: "binary",
			binding.EncodingStructured: "structured"}[msg.ReadEncoding()]
		e, err := binding.ToEvent(ctx, msg)
		if err != nil {
			fail("decode reply: %v", err)
		}
		events = append(events, decode(e))
	default:
		out["mode"] = "none"
		body, _ := io.ReadAll(resp.Body)
		out["body"] = string(body)
	}
	msg.Finish(nil)
	out["events"] = events
	json.NewEncoder(os.Stdout).Encode(out)
}
