// Package pipeline runs a model instance whose layers are split across nodes: each worker hosts
// the stages the leader's placement gives it, and the API node drives a request through them.
//
// Per request, the driver opens one forward stream to the first stage and one return stream to
// the last, on the cluster's tensor transport (netstack: QUIC, or TCP+TLS after a fallback;
// mutual TLS with the cluster certificates). Every stage opens the forward stream to the next,
// and the last stage opens a loop stream back to the first:
//
//	driver ──prompt──▶ stage 0 ──activations──▶ stage 1 ──▶ … ──▶ stage n-1
//	   ▲                  ▲                                           │ │
//	   │                  └──────────── sampled token (loop) ─────────┘ │
//	   └──────────────────────── sampled token (return) ────────────────┘
//
// The first frame of a stream is an open message (JSON in a control frame, with the protocol
// version: nodes of different versions refuse each other by name) naming the request, the
// instance, the whole pipeline and, on the return stream, the sampling parameters and what
// ends the completion (end-of-generation ids, the token limit). The driver sends the prompt
// (in chunks, so stages overlap on long prompts); then decode goes round the ring without it:
// the last stage samples, sends the token straight to the first stage unless it ends the
// completion, and then to the driver, which decodes it and streams it to the client while the
// stages run the next step. A stop sequence is the one end only the driver sees: the step the
// ring already started is wasted, and the driver ending its streams stops the ring. Each stage
// keeps the request's KV cache (a model.Seq) for as long as its incoming stream is open; the
// driver's CloseWrite cascades down the chain, the last stage closes the loop, and every
// stage frees its cache. A pipeline of one stage feeds its sampled token to itself. Activations
// travel as F32 by default, which makes a split model compute exactly what one node computes;
// F16 and Q8_0 halve or quarter the bytes for slow links.
//
// A stream between two roles of one node (the API node driving a stage it hosts) is an
// in-process pipe (transport.Pipe): the same frames and failure semantics, without encryption,
// loopback packets or the transport's goroutine hand-offs.
//
// Continuous batching: every stage hands the requests' pending steps (decode tokens, prompt
// chunks) to its batcher, which runs whatever is waiting in one model.Stage.ForwardBatch (each
// sequence with its own KV cache and positions), so the weights stream from memory once per
// round for all of them. A round starts when the previous one ends, or at once on an idle
// stage, where a lone request runs its step on its own goroutine; with other requests live, a
// round that has room waits a moment (at most 1 ms, 1/20 of a round) for their steps, which
// come back from the ring one by one, so that they run together rather than as singles. A round takes
// at most ceil(live requests / stages) steps, so that the requests form one group per stage and
// the stages work on different groups at the same time (while stage 1 works on group A, stage 0
// works on group B); a prompt chunk shares a round with other requests' steps 16 tokens at a
// time (chunked prefill), so a new prompt slows the streams already decoding instead of
// stalling them. ForwardBatch is exact per token: batching never changes a result.
// Each hosted stage's batching figures, live requests and ring tokens are in its StageStatus
// (/api/v1/instances) and on /metrics (exo_pipeline_stage_*).
//
// A failure anywhere cancels the request's streams with a reason that names the stage, node and
// cause; the cancellation propagates both ways, so the client gets an error within the
// transport's failure detection (at once on TCP, the idle timeout at worst) and every other
// stage frees its cache. A node whose own transport is shutting down says so, rather than
// blaming the peers whose connections it is closing.
//
// Multipath: nodes advertise every address their transport listens on (gossip tag, see
// cluster.NodeInfo.TransportPaths). A peer two or more of whose addresses sit on subnets of
// different local addresses is reached over one connection per path, each bound to its local
// address and probed on its own. The activations stream between two stages on such peers is a
// multipath bundle: frames from 256 KiB (prompt chunks) are striped over the paths in
// proportion to their measured bandwidth, smaller ones (decode steps) go whole on the
// lowest-latency path. Per-path byte counts are in /api/v1/cluster (transport[].paths) and
// /metrics (exo_netstack_path_sent_bytes_total).
//
// F16 and Q8_0 change greedy outputs only where a near-tie flips (TestPipelineWireEncodings,
// two hops): on stories260K every one of 64 tokens stays equal to F32's with either encoding;
// on the random-weight llama-spm32k-e256 the first 35 (F16) and 50 (Q8_0) of 64 do.
//
// Reused prompt starts (prefix.go): every stage keeps a finished request's sequence, and a
// later request whose prompt starts with enough of what one holds (the next turn of a
// conversation, a shared system prompt) starts every stage from a copy of it; the driver sends
// only the rest of the prompt. The driver decides, since it alone knows every token a kept
// sequence holds; a stage that no longer keeps it fails the request before any token, and the
// driver runs it again from the start. Each stage's reused positions are in its StageStatus.
//
// Tensor-parallel stages (state.Stage.Shards): shard 0's node hosts the stage as above, the
// other member loads shard 1 of the same layers, and shard 0 opens two data streams to it
// (opShard, opShardExchange; see shards.go) over which the pair keeps its sequences in step and
// swaps its parts of every product. A lost member fails the pair's requests with its name and
// makes shard 0 load again and reconnect.
//
// The same transport carries peer sharing of model files (the store's PeerHandler, as HTTP on
// streams of its own service) and the probes that measure each path's RTT and bandwidth; a
// node's figures per peer go to placement through gossip (Service.LinkFigures).
package pipeline
