// Package pipeline runs a model instance whose layers are split across nodes: each worker hosts
// the stages the leader's placement gives it, and the API node drives a request through them.
//
// Per request, the driver opens one forward stream to the first stage and one return stream to
// the last, on the cluster's tensor transport (netstack: QUIC, or TCP+TLS after a fallback;
// mutual TLS with the cluster certificates). Every stage opens the forward stream to the next:
//
//	driver ──tokens──▶ stage 0 ──activations──▶ stage 1 ──▶ … ──▶ stage n-1
//	   ▲                                                              │
//	   └──────────────────────── sampled token ───────────────────────┘
//
// The first frame of a stream is an open message (JSON in a control frame) naming the request,
// the instance, the whole pipeline and, on the return stream, the sampling parameters. Then
// the driver sends the prompt (in chunks, so stages overlap on long prompts) and, after each
// sampled token comes back, that token: decode goes round the ring. Each stage keeps the
// request's KV cache (a model.Seq) for as long as its incoming stream is open; the driver's
// CloseWrite cascades down the chain and every stage frees its cache. Activations travel as
// F32 by default, which makes a split model compute exactly what one node computes; F16 and
// Q8_0 halve or quarter the bytes for slow links.
//
// A failure anywhere cancels the request's streams with a reason that names the stage, node and
// cause; the cancellation propagates both ways, so the client gets an error within the
// transport's failure detection (at once on TCP, the idle timeout at worst) and every other
// stage frees its cache.
//
// Requests are independent: every stage runs one goroutine per request, so several requests
// are in flight at every stage at once (while stage 1 works on request A, stage 0 works on B).
//
// F16 and Q8_0 change greedy outputs only where a near-tie flips (TestPipelineWireEncodings,
// two hops): on stories260K every one of 64 tokens stays equal to F32's with either encoding;
// on the random-weight llama-spm32k-e256 the first 35 (F16) and 50 (Q8_0) of 64 do.
//
// The same transport carries peer sharing of model files (the store's PeerHandler, as HTTP on
// streams of its own service) and the probes that measure each peer's RTT and bandwidth.
package pipeline
