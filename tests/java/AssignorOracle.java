// Java's assignors as an oracle: the tests feed it groups and compare its assignments with ours.
// No broker: it calls ConsumerPartitionAssignor.assign(Cluster, GroupSubscription) as the Java leader
// (ConsumerCoordinator.onLeaderElected) does, with a Cluster built from the partition counts (one
// rack-less node) and the subscriptions in a HashMap filled in the given (JoinGroup) order.
//
// Input on stdin, one group at a time, lines of space-separated fields ("-" for none):
//   case <name>
//   topic <name> <partition count>
//   member <member id> <group.instance.id> <ConsumerProtocol subscription bytes, hex>
//   end
// and, to see how Java itself encodes a cooperative-sticky member's subscription:
//   javasub <generation> <topics a,b> <owned t:p,t:p> <rack>
// Output: for each case "case <name>", then per assignor and member
//   assignment <assignor> <member id> <Java's assignment bytes, hex> <the same partitions sorted, as Java encodes them, hex>
// (or "error <assignor> <exception>"), then "subscription <member id> <Java's re-encoding of it, hex>",
// then "end"; for javasub, "javasub <hex>".
//
// Compiled by the tests with javac against the cached kafka-clients jar (testkit::java::assignor_oracle).
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.Assignment;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.GroupSubscription;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.Subscription;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.consumer.RoundRobinAssignor;
import org.apache.kafka.clients.consumer.internals.ConsumerProtocol;
import org.apache.kafka.common.Cluster;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;

public final class AssignorOracle {
    public static void main(String[] argv) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
        String name = null;
        Map<String, Integer> topics = new LinkedHashMap<>();
        List<String[]> members = new ArrayList<>();
        String line;
        while ((line = in.readLine()) != null) {
            String[] f = line.trim().split(" ");
            switch (f[0]) {
                case "case":
                    name = f[1];
                    topics.clear();
                    members.clear();
                    break;
                case "topic":
                    topics.put(f[1], Integer.parseInt(f[2]));
                    break;
                case "member":
                    members.add(f);
                    break;
                case "end":
                    out.println("case " + name);
                    runCase(out, topics, members);
                    out.println("end");
                    out.flush();
                    break;
                case "javasub":
                    out.println("javasub " + javaSubscription(f));
                    out.flush();
                    break;
                default:
                    if (!f[0].isEmpty()) throw new IllegalArgumentException("unknown line: " + line);
            }
        }
        out.flush();
    }

    private static void runCase(PrintStream out, Map<String, Integer> topics, List<String[]> members) {
        Node node = new Node(0, "127.0.0.1", 9092);
        List<PartitionInfo> partitions = new ArrayList<>();
        topics.forEach((topic, count) -> {
            for (int p = 0; p < count; p++)
                partitions.add(new PartitionInfo(topic, p, node, new Node[] {node}, new Node[] {node}));
        });
        Cluster cluster = new Cluster("oracle", List.of(node), partitions, Collections.emptySet(), Collections.emptySet());
        List<ConsumerPartitionAssignor> assignors =
            List.of(new RangeAssignor(), new RoundRobinAssignor(), new CooperativeStickyAssignor());
        for (ConsumerPartitionAssignor assignor : assignors) {
            // As ConsumerCoordinator.onLeaderElected: a HashMap in JoinGroup order, decoded from the bytes.
            Map<String, Subscription> subscriptions = new HashMap<>();
            for (String[] m : members) {
                Subscription s = ConsumerProtocol.deserializeSubscription(ByteBuffer.wrap(unhex(m[3])));
                s.setGroupInstanceId(m[2].equals("-") ? Optional.empty() : Optional.of(m[2]));
                subscriptions.put(m[1], s);
            }
            Map<String, Assignment> result;
            try {
                result = assignor.assign(cluster, new GroupSubscription(subscriptions)).groupAssignment();
            } catch (RuntimeException e) {
                out.println("error " + assignor.name() + " " + e.toString().replace('\n', ' '));
                continue;
            }
            for (String[] m : members) {
                Assignment a = result.get(m[1]);
                if (a == null) {
                    out.println("assignment " + assignor.name() + " " + m[1] + " - -");
                    continue;
                }
                List<TopicPartition> sorted = new ArrayList<>(a.partitions());
                sorted.sort(Comparator.comparing(TopicPartition::topic).thenComparingInt(TopicPartition::partition));
                out.println("assignment " + assignor.name() + " " + m[1] + " "
                    + hex(ConsumerProtocol.serializeAssignment(a)) + " "
                    + hex(ConsumerProtocol.serializeAssignment(new Assignment(sorted))));
            }
        }
        for (String[] m : members) {
            Subscription s = ConsumerProtocol.deserializeSubscription(ByteBuffer.wrap(unhex(m[3])));
            out.println("subscription " + m[1] + " " + hex(ConsumerProtocol.serializeSubscription(s)));
        }
    }

    // What a Java cooperative-sticky member of this generation sends (ConsumerCoordinator.metadata()).
    private static String javaSubscription(String[] f) {
        int generation = Integer.parseInt(f[1]);
        CooperativeStickyAssignor assignor = new CooperativeStickyAssignor();
        assignor.onAssignment(null, new ConsumerGroupMetadata("g", generation, "m", Optional.empty()));
        List<String> topics = Arrays.asList(f[2].split(","));
        List<TopicPartition> owned = new ArrayList<>();
        if (!f[3].equals("-")) {
            for (String tp : f[3].split(",")) {
                int at = tp.lastIndexOf(':');
                owned.add(new TopicPartition(tp.substring(0, at), Integer.parseInt(tp.substring(at + 1))));
            }
        }
        Optional<String> rack = f[4].equals("-") ? Optional.empty() : Optional.of(f[4]);
        ByteBuffer userData = assignor.subscriptionUserData(new java.util.HashSet<>(topics));
        return hex(ConsumerProtocol.serializeSubscription(new Subscription(topics, userData, owned, generation, rack)));
    }

    private static String hex(ByteBuffer b) {
        StringBuilder s = new StringBuilder();
        ByteBuffer d = b.duplicate();
        while (d.hasRemaining()) s.append(String.format("%02x", d.get() & 0xff));
        return s.length() == 0 ? "-" : s.toString();
    }

    private static byte[] unhex(String s) {
        if (s.equals("-")) return new byte[0];
        byte[] b = new byte[s.length() / 2];
        for (int i = 0; i < b.length; i++) b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        return b;
    }
}
