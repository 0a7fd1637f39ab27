package io.mqtt2kafka.e2e;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.sink.SinkConnector;

/**
 * The end-to-end test's Cassandra sink: each record's value, a JSON object, becomes one row
 * through CQL's {@code INSERT INTO <table> JSON ?}, the table named per topic by
 * {@code topic.<topic>.table}. Ours because no Cassandra sink connector for schemaless JSON
 * values is on Maven Central (docs/end-to-end.md); it is test code, not a product.
 */
public class CqlJsonSinkConnector extends SinkConnector {
    static final String CONTACT_POINTS = "contact.points";
    static final String LOCAL_DC = "local.dc";

    static final ConfigDef CONFIG =
            new ConfigDef()
                    .define(CONTACT_POINTS, ConfigDef.Type.LIST, ConfigDef.Importance.HIGH,
                            "host:port of the Cassandra nodes")
                    .define(LOCAL_DC, ConfigDef.Type.STRING, "datacenter1",
                            ConfigDef.Importance.MEDIUM, "the driver's local data centre");

    private Map<String, String> props;

    @Override
    public void start(Map<String, String> props) {
        this.props = props;
    }

    @Override
    public Class<? extends Task> taskClass() {
        return CqlJsonSinkTask.class;
    }

    @Override
    public List<Map<String, String>> taskConfigs(int maxTasks) {
        List<Map<String, String>> configs = new ArrayList<>();
        for (int i = 0; i < maxTasks; i++)
            configs.add(props);
        return configs;
    }

    @Override
    public void stop() {}

    @Override
    public ConfigDef config() {
        return CONFIG;
    }

    @Override
    public String version() {
        return "1";
    }
}
