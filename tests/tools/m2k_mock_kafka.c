/* m2k-mock-kafka: librdkafka's mock Kafka cluster as a process, driven over
 * stdin, for integration tests and benchmarks.
 *
 *   m2k-mock-kafka [--brokers N] [--partitions P] [--topic NAME]...
 *
 * Topics auto-create on first use (the producer's metadata request) with the
 * mock's fixed default of 4 partitions and replication min(3, N); librdkafka
 * 2.0.2 has no setter for that default. --partitions P is the partition count
 * of each --topic created at start and the default of `create`.
 *
 * Prints one line "BOOTSTRAP <addr>" on stdout, then reads one command per
 * line and answers "OK" or "ERR <text>" to each:
 *
 *   down <broker_id>                 broker stops accepting and drops connections
 *   up <broker_id>                   ... and comes back (-1 = all brokers)
 *   rtt <broker_id> <ms>             adds round-trip delay to every response
 *   push_errors <api> <count> <ERR>...   the next <count> requests of <api>
 *                                    (name like Produce, or number) fail with
 *                                    the errors in order; one error = repeated
 *   clear_errors <api>               drops the pending errors of <api>
 *   topic_error <topic> <ERR>        metadata for <topic> reports <ERR>
 *   leader <topic> <partition> <broker_id>
 *   create <topic> [<partitions> [<replication>]]
 *   quit
 *
 * Error names are librdkafka's (rd_kafka_err2name): NOT_LEADER_FOR_PARTITION,
 * TOPIC_AUTHORIZATION_FAILED, _TRANSPORT, ...; numbers are accepted too.
 * The process exits on "quit", on end of stdin (so a crashed test never leaks
 * it) and on SIGTERM/SIGINT. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_ERRORS 64
#define MAX_TOPICS 64

static long default_partitions = 4;

static const char *const api_names[] = {
    "Produce",
    "Fetch",
    "ListOffsets",
    "Metadata",
    "LeaderAndIsr",
    "StopReplica",
    "UpdateMetadata",
    "ControlledShutdown",
    "OffsetCommit",
    "OffsetFetch",
    "FindCoordinator",
    "JoinGroup",
    "Heartbeat",
    "LeaveGroup",
    "SyncGroup",
    "DescribeGroups",
    "ListGroups",
    "SaslHandshake",
    "ApiVersions",
    "CreateTopics",
    "DeleteTopics",
    "DeleteRecords",
    "InitProducerId",
    "OffsetForLeaderEpoch",
    "AddPartitionsToTxn",
    "AddOffsetsToTxn",
    "EndTxn",
    "WriteTxnMarkers",
    "TxnOffsetCommit",
    "DescribeAcls",
    "CreateAcls",
    "DeleteAcls",
    "DescribeConfigs",
    "AlterConfigs",
    "AlterReplicaLogDirs",
    "DescribeLogDirs",
    "SaslAuthenticate",
    "CreatePartitions",
    "CreateDelegationToken",
    "RenewDelegationToken",
    "ExpireDelegationToken",
    "DescribeDelegationToken",
    "DeleteGroups",
    "ElectLeaders",
    "IncrementalAlterConfigs",
    "AlterPartitionReassignments",
    "ListPartitionReassignments",
    "OffsetDelete",
};
#define N_API (sizeof(api_names) / sizeof(api_names[0]))

/* Parses a whole base-10 integer in [min, max]. */
static int parse_int(const char *s, long min, long max, long *out) {
    if (s == NULL || *s == '\0')
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_api(const char *s, int16_t *out) {
    long v;
    if (s == NULL)
        return -1;
    if (parse_int(s, 0, INT16_MAX, &v) == 0) {
        *out = (int16_t)v;
        return 0;
    }
    for (size_t i = 0; i < N_API; i++) {
        if (strcasecmp(s, api_names[i]) == 0) {
            *out = (int16_t)i;
            return 0;
        }
    }
    return -1;
}

static int parse_err(const char *s, rd_kafka_resp_err_t *out) {
    long v;
    if (s == NULL)
        return -1;
    if (parse_int(s, -200, 1000, &v) == 0) {
        *out = (rd_kafka_resp_err_t)v;
        return 0;
    }
    if (strncmp(s, "RD_KAFKA_RESP_ERR_", 18) == 0)
        s += 18;
    const struct rd_kafka_err_desc *descs;
    size_t n;
    rd_kafka_get_err_descs(&descs, &n);
    for (size_t i = 0; i < n; i++) {
        if (descs[i].name != NULL && strcmp(descs[i].name, s) == 0) {
            *out = descs[i].code;
            return 0;
        }
    }
    return -1;
}

static void reply_err(const char *fmt, const char *arg) {
    fputs("ERR ", stdout);
    fprintf(stdout, fmt, arg);
    fputc('\n', stdout);
}

static void reply_rd(rd_kafka_resp_err_t err) {
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        puts("OK");
    else
        reply_err("%s", rd_kafka_err2str(err));
}

static int broker_arg(const char *s, int n_brokers, int32_t *out) {
    long v;
    if (parse_int(s, -1, n_brokers, &v) != 0 || v == 0)
        return -1;
    *out = (int32_t)v;
    return 0;
}

/* Executes one command; returns 1 on quit. */
static int run_command(rd_kafka_mock_cluster_t *mc, int n_brokers, char *line) {
    char *save = NULL;
    char *argv[MAX_ERRORS + 4];
    int argc = 0;
    for (char *tok = strtok_r(line, " \t\r\n", &save); tok != NULL;
         tok = strtok_r(NULL, " \t\r\n", &save)) {
        if (argc == (int)(sizeof(argv) / sizeof(argv[0]))) {
            reply_err("%s", "too many arguments");
            return 0;
        }
        argv[argc++] = tok;
    }
    if (argc == 0) {
        reply_err("%s", "empty command");
        return 0;
    }
    const char *cmd = argv[0];
    int32_t broker;
    long v, w;

    if (strcmp(cmd, "quit") == 0 && argc == 1) {
        puts("OK");
        return 1;
    }
    if ((strcmp(cmd, "down") == 0 || strcmp(cmd, "up") == 0) && argc == 2) {
        if (broker_arg(argv[1], n_brokers, &broker) != 0) {
            reply_err("bad broker id: %s", argv[1]);
            return 0;
        }
        reply_rd(cmd[0] == 'd' ? rd_kafka_mock_broker_set_down(mc, broker)
                               : rd_kafka_mock_broker_set_up(mc, broker));
        return 0;
    }
    if (strcmp(cmd, "rtt") == 0 && argc == 3) {
        if (broker_arg(argv[1], n_brokers, &broker) != 0) {
            reply_err("bad broker id: %s", argv[1]);
            return 0;
        }
        if (parse_int(argv[2], 0, 3600000, &v) != 0) {
            reply_err("bad rtt: %s", argv[2]);
            return 0;
        }
        reply_rd(rd_kafka_mock_broker_set_rtt(mc, broker, (int)v));
        return 0;
    }
    if (strcmp(cmd, "push_errors") == 0 && argc >= 4) {
        int16_t api;
        if (parse_api(argv[1], &api) != 0) {
            reply_err("unknown api: %s", argv[1]);
            return 0;
        }
        if (parse_int(argv[2], 1, MAX_ERRORS, &v) != 0) {
            reply_err("bad count (1..64): %s", argv[2]);
            return 0;
        }
        int n_names = argc - 3;
        if (n_names != 1 && n_names != v) {
            reply_err("%s", "give one error (repeated) or <count> errors");
            return 0;
        }
        rd_kafka_resp_err_t errs[MAX_ERRORS];
        for (int i = 0; i < n_names; i++) {
            if (parse_err(argv[3 + i], &errs[i]) != 0) {
                reply_err("unknown error: %s", argv[3 + i]);
                return 0;
            }
        }
        for (long i = n_names; i < v; i++)
            errs[i] = errs[0];
        rd_kafka_mock_push_request_errors_array(mc, api, (size_t)v, errs);
        puts("OK");
        return 0;
    }
    if (strcmp(cmd, "clear_errors") == 0 && argc == 2) {
        int16_t api;
        if (parse_api(argv[1], &api) != 0) {
            reply_err("unknown api: %s", argv[1]);
            return 0;
        }
        rd_kafka_mock_clear_request_errors(mc, api);
        puts("OK");
        return 0;
    }
    if (strcmp(cmd, "topic_error") == 0 && argc == 3) {
        rd_kafka_resp_err_t err;
        if (parse_err(argv[2], &err) != 0) {
            reply_err("unknown error: %s", argv[2]);
            return 0;
        }
        rd_kafka_mock_topic_set_error(mc, argv[1], err);
        puts("OK");
        return 0;
    }
    if (strcmp(cmd, "leader") == 0 && argc == 4) {
        if (parse_int(argv[2], 0, INT32_MAX, &v) != 0) {
            reply_err("bad partition: %s", argv[2]);
            return 0;
        }
        if (broker_arg(argv[3], n_brokers, &broker) != 0) {
            reply_err("bad broker id: %s", argv[3]);
            return 0;
        }
        reply_rd(rd_kafka_mock_partition_set_leader(mc, argv[1], (int32_t)v, broker));
        return 0;
    }
    if (strcmp(cmd, "create") == 0 && argc >= 2 && argc <= 4) {
        v = default_partitions;
        w = n_brokers < 3 ? n_brokers : 3;
        if (argc >= 3 && parse_int(argv[2], 1, 10000, &v) != 0) {
            reply_err("bad partition count: %s", argv[2]);
            return 0;
        }
        if (argc == 4 && parse_int(argv[3], 1, n_brokers, &w) != 0) {
            reply_err("bad replication factor: %s", argv[3]);
            return 0;
        }
        reply_rd(rd_kafka_mock_topic_create(mc, argv[1], (int)v, (int)w));
        return 0;
    }
    reply_err("unknown command or wrong arguments: %s", cmd);
    return 0;
}

static void usage(void) {
    fputs("usage: m2k-mock-kafka [--brokers N] [--partitions P] [--topic NAME]...\n", stderr);
}

int main(int argc, char **argv) {
    long n_brokers = 3;
    const char *topics[MAX_TOPICS];
    int n_topics = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            usage();
            return 2;
        }
        if (strcmp(argv[i], "--topic") == 0 && n_topics < MAX_TOPICS) {
            topics[n_topics++] = argv[++i];
            continue;
        }
        long *dst = NULL;
        if (strcmp(argv[i], "--brokers") == 0)
            dst = &n_brokers;
        else if (strcmp(argv[i], "--partitions") == 0)
            dst = &default_partitions;
        if (dst == NULL || parse_int(argv[i + 1], 1, 64, dst) != 0) {
            usage();
            return 2;
        }
        i++;
    }

    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "m2k-mock-kafka: %s\n", errstr);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "m2k-mock-kafka: %s\n", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, (int)n_brokers);
    if (mc == NULL) {
        fprintf(stderr, "m2k-mock-kafka: cannot create the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    for (int i = 0; i < n_topics; i++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, topics[i], (int)default_partitions,
                                                             n_brokers < 3 ? (int)n_brokers : 3);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "m2k-mock-kafka: topic %s: %s\n", topics[i], rd_kafka_err2str(err));
            return 1;
        }
    }
    printf("BOOTSTRAP %s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);

    char line[4096];
    while (fgets(line, sizeof(line), stdin) != NULL) {
        int quit = run_command(mc, (int)n_brokers, line);
        fflush(stdout);
        if (quit)
            break;
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
