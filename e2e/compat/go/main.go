// franz: a small franz-go (github.com/twmb/franz-go) client for the compatibility suite.
// franz-go is strict about the protocol (it hung on brokers that answered a fetch from inside
// a batch with a later batch), so it checks things the other clients forgive.
//
//	franz produce  -brokers B -topic T -n N [-codec none|gzip|snappy|lz4|zstd] [-keys K]
//	franz consume  -brokers B -topic T -group G -n N          (a group member, commits on exit)
//	franz fetch-at -brokers B -topic T -partition P -offset O -n N   (no group)
//
// Every record produced or consumed is printed as one JSON line:
// {"partition":0,"offset":5,"key":"user-1","value":"..."}. Exits non-zero on any error or
// when -timeout passes first.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type line struct {
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Key       string `json:"key"`
	Value     string `json:"value"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "franz: "+format+"\n", args...)
	os.Exit(1)
}

func emit(r *kgo.Record) {
	b, _ := json.Marshal(line{r.Partition, r.Offset, string(r.Key), string(r.Value)})
	fmt.Println(string(b))
}

// readN polls until n records arrived and prints them; fails on a fetch error or the timeout.
func readN(ctx context.Context, cl *kgo.Client, n int) {
	got := 0
	for got < n {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			fail("read %d of %d records before the timeout", got, n)
		}
		fetches.EachError(func(t string, p int32, err error) { fail("fetch %s-%d: %v", t, p, err) })
		fetches.EachRecord(func(r *kgo.Record) {
			if got < n {
				emit(r)
				got++
			}
		})
	}
}

func codec(name string) kgo.CompressionCodec {
	switch name {
	case "none":
		return kgo.NoCompression()
	case "gzip":
		return kgo.GzipCompression()
	case "snappy":
		return kgo.SnappyCompression()
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	}
	fail("unknown codec %q", name)
	return kgo.NoCompression()
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: franz produce|consume|fetch-at [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "bootstrap servers, comma separated")
	topic := fs.String("topic", "", "topic")
	n := fs.Int("n", 100, "records to produce or to consume")
	comp := fs.String("codec", "none", "compression codec for produce")
	keys := fs.Int("keys", 10, "distinct keys for produce")
	group := fs.String("group", "", "consumer group for consume")
	partition := fs.Int("partition", 0, "partition for fetch-at")
	offset := fs.Int64("offset", 0, "offset for fetch-at")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	_ = fs.Parse(os.Args[2:])
	if *topic == "" {
		fail("-topic is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	opts := []kgo.Opt{kgo.SeedBrokers(strings.Split(*brokers, ",")...), kgo.ClientID("franz-e2e")}

	switch os.Args[1] {
	case "produce":
		// franz-go's defaults: acks=all and an idempotent producer.
		cl, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic(*topic),
			kgo.ProducerBatchCompression(codec(*comp)), kgo.ProducerLinger(5*time.Millisecond))...)
		if err != nil {
			fail("%v", err)
		}
		defer cl.Close()
		records := make([]*kgo.Record, *n)
		for i := range records {
			records[i] = &kgo.Record{
				Key:   []byte(fmt.Sprintf("user-%d", i%*keys)),
				Value: []byte(fmt.Sprintf(`{"order":%d,"item":"김밥"}`, i)),
			}
		}
		results := cl.ProduceSync(ctx, records...)
		if err := results.FirstErr(); err != nil {
			fail("produce: %v", err)
		}
		for _, r := range results {
			emit(r.Record)
		}
	case "consume":
		if *group == "" {
			fail("-group is required")
		}
		cl, err := kgo.NewClient(append(opts, kgo.ConsumerGroup(*group), kgo.ConsumeTopics(*topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())...)
		if err != nil {
			fail("%v", err)
		}
		readN(ctx, cl, *n)
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			fail("commit: %v", err)
		}
		cl.LeaveGroup()
		cl.Close()
	case "fetch-at":
		cl, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			*topic: {int32(*partition): kgo.NewOffset().At(*offset)},
		}))...)
		if err != nil {
			fail("%v", err)
		}
		defer cl.Close()
		readN(ctx, cl, *n)
	default:
		fail("unknown command %q", os.Args[1])
	}
}
