package io.mqtt2kafka.e2e;

import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.CqlSessionBuilder;
import com.datastax.oss.driver.api.core.cql.PreparedStatement;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.Collection;
import java.util.HashMap;
import java.util.Map;
import org.apache.kafka.common.config.AbstractConfig;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;

/** Writes each record synchronously: put() returns only when Cassandra took every row, so
 * the offsets Connect commits after it are of written rows (at least once). A failed write
 * fails the task: the test then finds rows missing and keeps the Connect log. */
public class CqlJsonSinkTask extends SinkTask {
    private CqlSession session;
    private final Map<String, PreparedStatement> inserts = new HashMap<>();
    private Map<String, String> props;

    @Override
    public void start(Map<String, String> props) {
        this.props = props;
        AbstractConfig cfg = new AbstractConfig(CqlJsonSinkConnector.CONFIG, props);
        CqlSessionBuilder b = CqlSession.builder();
        for (String hp : cfg.getList(CqlJsonSinkConnector.CONTACT_POINTS)) {
            int colon = hp.lastIndexOf(':');
            b.addContactPoint(new InetSocketAddress(hp.substring(0, colon),
                    Integer.parseInt(hp.substring(colon + 1))));
        }
        session = b.withLocalDatacenter(cfg.getString(CqlJsonSinkConnector.LOCAL_DC)).build();
    }

    private PreparedStatement insertFor(String topic) {
        return inserts.computeIfAbsent(topic, t -> {
            String table = props.get("topic." + t + ".table");
            if (table == null)
                throw new ConnectException("no topic." + t + ".table in the configuration");
            return session.prepare("INSERT INTO " + table + " JSON ?");
        });
    }

    @Override
    public void put(Collection<SinkRecord> records) {
        for (SinkRecord r : records) {
            Object v = r.value();
            String json = v instanceof byte[] ? new String((byte[]) v, StandardCharsets.UTF_8)
                                              : String.valueOf(v);
            session.execute(insertFor(r.topic()).bind(json));
        }
    }

    @Override
    public void stop() {
        if (session != null)
            session.close();
    }

    @Override
    public String version() {
        return "1";
    }
}
