// A Kafka Streams application as the guides teach it: page views counted per user in
// 5-minute windows that advance by one minute, written to an output topic. The grace period
// (2 h) covers the whole test's data: the repartition topic interleaves the upstream tasks'
// records, so event time there is out of order by up to the span of the input. It re-keys the
// input (a repartition topic) and keeps its counts in a RocksDB store backed by a compacted
// changelog topic, so it exercises what Streams needs from a broker: CreateTopics with
// configs for its internal topics, DeleteRecords on the repartition topic, a consumer group
// with Streams' own assignor, and transactions-free at-least-once commits.
//
// Run with Java's single-file launcher against the Kafka jars:
//   java -cp "$KAFKA_HOME/libs/*" WindowedCounts.java BOOTSTRAP APP_ID INPUT OUTPUT STATE_DIR
// Input records: key = order id, value = user. Output records: key = "user@windowStartMs",
// value = the count so far (every update is emitted: the record cache is off).
// Prints "RUNNING" on stdout once the application is running; on SIGTERM it closes and prints
// "CLOSED" when every thread stopped in time (the JVM then exits with 143, as after any SIGTERM).

import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;

public class WindowedCounts {
    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: WindowedCounts BOOTSTRAP APP_ID INPUT OUTPUT STATE_DIR");
            System.exit(2);
        }
        String bootstrap = args[0], appId = args[1], input = args[2], output = args[3];
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[4]);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        // Purge the repartition topic at every commit rather than every 30 s (the default).
        props.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 200);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .groupBy((order, user) -> user, Grouped.with("by-user", Serdes.String(), Serdes.String()))
                .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMinutes(5), Duration.ofHours(2))
                        .advanceBy(Duration.ofMinutes(1)))
                .count()
                .toStream()
                .map((window, count) -> KeyValue.pair(
                        window.key() + "@" + window.window().start(), Long.toString(count)))
                .to(output, Produced.with(Serdes.String(), Serdes.String()));

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch stopped = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            System.err.println("state " + before + " -> " + now);
            if (now == KafkaStreams.State.RUNNING) {
                System.out.println("RUNNING");
                System.out.flush();
            }
            if (now == KafkaStreams.State.ERROR) {
                stopped.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            // Leave the group on close, so a restarted instance is assigned at once instead
            // of after the old member's session timeout.
            CloseOptions leave = CloseOptions.groupMembershipOperation(
                    CloseOptions.GroupMembershipOperation.LEAVE_GROUP).withTimeout(Duration.ofSeconds(20));
            if (streams.close(leave)) {
                System.out.println("CLOSED");
                System.out.flush();
            }
            stopped.countDown();
        }));
        streams.start();
        stopped.await();
        if (streams.state() == KafkaStreams.State.ERROR) {
            System.err.println("the Streams application failed");
            System.exit(1);
        }
    }
}
