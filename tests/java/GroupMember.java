// The seed's consumer with the Java client, Apache Kafka's reference consumer-group member.
//
// Joins --group on --topic with the client's default assignors (range, cooperative-sticky), earliest
// reset and auto commit, as the seed's kafka-python consumer does. Two outputs:
//   --output events (the interop tests): one JSON line per assignment change on stdout,
//                   {"assigned": [partitions]} / {"revoked": [partitions]}, and one per record,
//                   {"partition": p, "offset": o};
//   --output seed   (the bench): each value parsed as JSON and printed as `Received message: <json>`
//                   on stdout, the seed's per-message work; `assigned <count>` and `revoked` on stderr.
// --topic takes a comma-separated list; --rack sets client.rack (KIP-881 rack-aware assignors);
// --assignors range,roundrobin,cooperative-sticky sets partition.assignment.strategy.
// --protocol consumer sets group.protocol=consumer (KIP-848): the broker assigns and times the
// heartbeats, so --assignors and the shortened heartbeat and session are not sent (Java refuses
// them); --remote-assignor uniform|range sets group.remote.assignor.
// Timers are shortened for tests (500 ms heartbeats, 6 s session, 1 s commits) unless --defaults.
// Leaves the group cleanly (final commit, LeaveGroup) on SIGTERM/SIGINT or after --seconds.
//
// Compiled by the tests with javac against the cached kafka-clients jar (localkafka::jars::compile):
//   java -cp <classes>:<jars>/* GroupMember --brokers 127.0.0.1:9092 --group g --topic t
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.stream.Collectors;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public final class GroupMember {
    private static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        args.put("--seconds", "90");
        args.put("--output", "events");
        args.put("--client-id", "java-member");
        boolean defaults = false;
        for (int i = 0; i < argv.length; i++) {
            if (argv[i].equals("--defaults")) {
                defaults = true;
            } else if (i + 1 < argv.length && argv[i].startsWith("--")) {
                args.put(argv[i], argv[++i]);
            } else {
                System.err.println("usage: GroupMember --brokers B --group G --topic T [--seconds S] "
                        + "[--output events|seed] [--client-id C] [--rack R] [--assignors A,B] [--protocol classic|consumer] [--remote-assignor A] [--defaults]");
                System.exit(2);
            }
        }
        for (String required : List.of("--brokers", "--group", "--topic")) {
            if (!args.containsKey(required)) {
                System.err.println("GroupMember: " + required + " is required");
                System.exit(2);
            }
        }
        boolean seed = args.get("--output").equals("seed");
        PrintStream out = new PrintStream(new BufferedOutputStream(System.out, 1 << 16), false,
                StandardCharsets.UTF_8);

        Properties config = new Properties();
        config.put("bootstrap.servers", args.get("--brokers"));
        config.put("group.id", args.get("--group"));
        config.put("client.id", args.get("--client-id"));
        if (args.containsKey("--assignors")) {
            Map<String, String> classes = Map.of(
                    "range", "org.apache.kafka.clients.consumer.RangeAssignor",
                    "roundrobin", "org.apache.kafka.clients.consumer.RoundRobinAssignor",
                    "cooperative-sticky", "org.apache.kafka.clients.consumer.CooperativeStickyAssignor");
            List<String> strategy = new ArrayList<>();
            for (String name : args.get("--assignors").split(",")) {
                strategy.add(classes.getOrDefault(name, name));
            }
            config.put("partition.assignment.strategy", String.join(",", strategy));
        }
        boolean kip848 = args.getOrDefault("--protocol", "classic").equals("consumer");
        if (kip848) {
            config.put("group.protocol", "consumer");
            if (args.containsKey("--remote-assignor")) {
                config.put("group.remote.assignor", args.get("--remote-assignor"));
            }
        }
        if (args.containsKey("--rack")) {
            config.put("client.rack", args.get("--rack"));
        }
        config.put("auto.offset.reset", "earliest");
        config.put("enable.auto.commit", "true");
        config.put("key.deserializer", ByteArrayDeserializer.class.getName());
        config.put("value.deserializer", ByteArrayDeserializer.class.getName());
        if (!defaults) {
            if (!kip848) {
                config.put("heartbeat.interval.ms", "500");
                config.put("session.timeout.ms", "6000");
            }
            config.put("auto.commit.interval.ms", "1000");
        }

        KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(config);
        Thread main = Thread.currentThread();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            consumer.wakeup();
            try {
                main.join(30_000);
            } catch (InterruptedException ignored) {
                Thread.currentThread().interrupt();
            }
        }));

        consumer.subscribe(List.of(args.get("--topic").split(",")), new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                if (seed) {
                    System.err.println("revoked");
                } else {
                    out.println("{\"revoked\": " + sorted(partitions) + "}");
                    out.flush();
                }
            }

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                // The default assignors include cooperative-sticky: report the whole assignment,
                // not just what this round added.
                Collection<TopicPartition> all = consumer.assignment();
                if (seed) {
                    System.err.println("assigned " + all.size());
                } else {
                    out.println("{\"assigned\": " + sorted(all) + "}");
                    out.flush();
                }
            }
        });

        long deadline = System.nanoTime() + (long) (Double.parseDouble(args.get("--seconds")) * 1e9);
        try {
            while (System.nanoTime() < deadline) {
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(200));
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    if (seed) {
                        try {
                            out.println("Received message: " + JSON.readTree(r.value()));
                        } catch (Exception notJson) {
                            System.err.println("not JSON at " + r.partition() + "@" + r.offset());
                        }
                    } else {
                        out.println("{\"partition\": " + r.partition() + ", \"offset\": " + r.offset() + "}");
                    }
                }
                out.flush();
            }
        } catch (WakeupException stopping) {
            // SIGTERM or SIGINT: fall through to close.
        } finally {
            out.flush();
            // close(Duration): deprecated in 4.x for CloseOptions, which 3.9 lacks.
            consumer.close(Duration.ofSeconds(10));
        }
    }

    private static List<Integer> sorted(Collection<TopicPartition> partitions) {
        List<Integer> list = new ArrayList<>(partitions.stream().map(TopicPartition::partition)
                .collect(Collectors.toList()));
        list.sort(null);
        return list;
    }
}
