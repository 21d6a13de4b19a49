package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
)

type streamResult struct {
	text string
	ttft time.Duration
	err  error
}

func streamStory(ctx context.Context, client openai.Client, seed int64, maxTokens int64) streamResult {
	start := time.Now()
	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:     "stories260K-F32",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(fmt.Sprintf("Story %d", seed))},
		MaxTokens: openai.Int(maxTokens), Temperature: openai.Float(0.9), Seed: openai.Int(seed),
	})
	var r streamResult
	var b strings.Builder
	for stream.Next() {
		ch := stream.Current()
		if len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
			if r.ttft == 0 {
				r.ttft = time.Since(start)
			}
			b.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	r.text, r.err = b.String(), stream.Err()
	return r
}

// soloStories streams n stories one at a time (seeds seed0, seed0+1, …) and returns their
// texts: what each client must get under load too.
func soloStories(t *testing.T, client openai.Client, seed0 int64, n int, maxTokens int64) []string {
	t.Helper()
	texts := make([]string, n)
	for i := range texts {
		r := streamStory(context.Background(), client, seed0+int64(i), maxTokens)
		if r.err != nil {
			t.Fatal(r.err)
		}
		texts[i] = r.text
	}
	return texts
}

// TestConcurrentStreams: 64 clients at once each get exactly what they get alone.
func TestConcurrentStreams(t *testing.T) {
	_, client := storiesNode(t, nil)
	ctx := context.Background()
	const clients = 64
	alone := soloStories(t, client, 0, clients, 24)
	results := streamStories(ctx, client, clients, 0, 24, 0)
	distinct := map[string]bool{}
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("client %d: %v", i, r.err)
		}
		if r.text != alone[i] {
			t.Fatalf("client %d under load:\n%q\nalone:\n%q", i, r.text, alone[i])
		}
		distinct[r.text] = true
	}
	if len(distinct) < clients/2 {
		t.Fatalf("only %d distinct outputs for %d seeds: outputs are not independent", len(distinct), clients)
	}
}

// BenchmarkConcurrentStreams reports throughput and time to first token with 64 streaming
// clients on stories260K: go test -run - -bench ConcurrentStreams ./appliance/e2e/
func BenchmarkConcurrentStreams(b *testing.B) {
	_, client := storiesNode(b, nil)
	ctx := context.Background()
	const clients, tokens = 64, 64
	var ttfts []time.Duration
	b.ResetTimer()
	start := time.Now()
	for n := 0; n < b.N; n++ {
		results := streamStories(ctx, client, clients, 0, tokens, 0)
		for _, r := range results {
			if r.err != nil {
				b.Fatal(r.err)
			}
			ttfts = append(ttfts, r.ttft)
		}
	}
	elapsed := time.Since(start)
	sort.Slice(ttfts, func(i, j int) bool { return ttfts[i] < ttfts[j] })
	b.ReportMetric(float64(b.N*clients*tokens)/elapsed.Seconds(), "tokens/s")
	b.ReportMetric(float64(ttfts[len(ttfts)/2].Milliseconds()), "ttft-p50-ms")
	b.ReportMetric(float64(ttfts[len(ttfts)*99/100].Milliseconds()), "ttft-p99-ms")
}

// streamStories runs n streamStory clients at once, client i with seed seed0+i, each under ctx
// with timeout (0: none), and returns their results by client.
func streamStories(ctx context.Context, client openai.Client, n int, seed0, maxTokens int64, timeout time.Duration) []streamResult {
	results := make([]streamResult, n)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx := ctx
			if timeout > 0 {
				var cancel context.CancelFunc
				cctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			results[i] = streamStory(cctx, client, seed0+int64(i), maxTokens)
		}()
	}
	wg.Wait()
	return results
}
