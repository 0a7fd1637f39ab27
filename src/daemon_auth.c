/* Password checks on the threadpool, bounded (see daemon_auth.h). */
#include "daemon_auth.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/passwd_file.h"
#include "mqtt/codec.h"
#include "mqtt/codec5.h"
#include "util/list.h"
#include "util/log.h"

/* A connection's session_conn_data: its daemon_auth_t until its first
 * packet is screened, then the job its CONNECT waits for until the CONNECT is
 * fed, then NULL (the CONNECT was seen: bytes go straight to the session).
 * Both structs begin with their kind. */
typedef enum { DATA_AUTH = 1, DATA_JOB } data_kind_t;

#define AUTH_MAX_WORKERS 64 /* CONFIG_THREADS_MAX */

/* auth.max_hashing and auth.max_hashing_queue count every worker's checks
 * (threads: N): the counts are atomics here, each worker keeps its own queue
 * (its checks complete on its loop), and a worker that frees a slot while
 * others wait wakes them (server_post). */
typedef struct {
    atomic_uint running; /* jobs on the threadpool */
    atomic_size_t queued;
    daemon_auth_t *all[AUTH_MAX_WORKERS]; /* every worker's, set before they run */
    unsigned n;
} auth_shared_t;

struct daemon_auth {
    data_kind_t kind; /* DATA_AUTH */
    server_t *srv;
    security_t **sec;
    const config_t **cfg;
    auth_shared_t *sh; /* the first worker's */
    bool own_sh;
    list_t queue;            /* jobs waiting for a slot, oldest first */
    atomic_size_t n_waiting; /* ... their count (read by the other workers) */
    uint64_t refused;
};

typedef enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE } job_state_t;

struct auth_job {
    data_kind_t kind; /* DATA_JOB */
    list_t node;      /* in queue while JOB_QUEUED */
    daemon_auth_t *a;
    session_conn_t *sc; /* NULL once the connection is gone */
    job_state_t state;
    auth_db_t *db; /* a reference: a reload may replace the file meanwhile */
    uint32_t generation;
    char *user;
    size_t ulen;
    uint8_t *pw; /* NULL: no password flag */
    size_t pwlen;
    int rc; /* auth_db_check's answer */
};

daemon_auth_t *daemon_auth_new(server_t *srv, security_t **sec, const config_t **cfg,
                               daemon_auth_t *first) {
    daemon_auth_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->sh = first ? first->sh : calloc(1, sizeof(*a->sh));
    if (!a->sh || a->sh->n == AUTH_MAX_WORKERS) {
        free(first ? NULL : a->sh);
        free(a);
        return NULL;
    }
    a->own_sh = !first;
    a->sh->all[a->sh->n++] = a;
    a->kind = DATA_AUTH;
    a->srv = srv;
    a->sec = sec;
    a->cfg = cfg;
    list_init(&a->queue);
    return a;
}

/* After server_free: every running job has called done. The first worker's
 * goes last. */
void daemon_auth_free(daemon_auth_t *a) {
    if (a && a->own_sh)
        free(a->sh);
    free(a);
}

uint64_t daemon_auth_refused(const daemon_auth_t *a) {
    return a->refused;
}

static void job_free(auth_job_t *j) {
    auth_db_free(j->db);
    free(j->user);
    if (j->pw)
        explicit_bzero(j->pw, j->pwlen);
    free(j->pw);
    free(j);
}

/* On a threadpool thread: reads only the job and its immutable database. */
static void job_work(void *arg) {
    auth_job_t *j = arg;
    j->rc = auth_db_check(j->db, j->user, j->ulen, j->pw, j->pwlen);
}

static void job_done(void *arg);

/* Takes a slot of auth.max_hashing (every worker's): true, or false when all
 * are taken. */
static bool take_slot(daemon_auth_t *a) {
    uint32_t max = (*a->cfg)->auth.max_hashing;
    if (atomic_fetch_add(&a->sh->running, 1) < max)
        return true;
    atomic_fetch_sub(&a->sh->running, 1);
    return false;
}

static void queue_add(daemon_auth_t *a, auth_job_t *j, bool head) {
    if (head)
        list_insert_head(&a->queue, &j->node);
    else
        list_insert_tail(&a->queue, &j->node);
    atomic_fetch_add(&a->n_waiting, 1);
    atomic_fetch_add(&a->sh->queued, 1);
}

static void unqueue(daemon_auth_t *a, auth_job_t *j) {
    list_remove(&j->node);
    atomic_fetch_sub(&a->n_waiting, 1);
    atomic_fetch_sub(&a->sh->queued, 1);
}

/* Starts queued jobs while slots are free. */
static void pump(daemon_auth_t *a) {
    list_t *n;
    /* The queue first: at shutdown (server_free's drain) it is empty and the
     * configuration may be gone. */
    while ((n = list_first(&a->queue)) && take_slot(a)) {
        auth_job_t *j = LIST_ENTRY(n, auth_job_t, node);
        unqueue(a, j);
        if (server_work(a->srv, job_work, job_done, j) != 0) {
            /* No memory for the request: checked here, on the loop. */
            atomic_fetch_sub(&a->sh->running, 1);
            job_work(j);
            j->state = JOB_DONE;
            server_conn_resume(session_conn_ud(j->sc));
            continue;
        }
        j->state = JOB_RUNNING;
    }
}

static void pump_posted(void *arg) {
    pump(arg);
}

/* A slot was freed: the other workers with checks waiting try their queue. */
static void wake_others(daemon_auth_t *a) {
    if (atomic_load(&a->sh->queued) == 0)
        return;
    for (unsigned i = 0; i < a->sh->n; i++) {
        daemon_auth_t *o = a->sh->all[i];
        if (o != a && atomic_load(&o->n_waiting) > 0)
            server_post(o->srv, pump_posted, o);
    }
}

static void job_done(void *arg) {
    auth_job_t *j = arg;
    daemon_auth_t *a = j->a;
    atomic_fetch_sub(&a->sh->running, 1);
    if (!j->sc) {
        job_free(j); /* the connection closed meanwhile */
    } else if (security_generation(*a->sec) != j->generation) {
        /* A reload replaced the password file: check against the new one. */
        auth_db_free(j->db);
        j->db = security_db_ref(*a->sec);
        j->generation = security_generation(*a->sec);
        if (j->db) {
            j->state = JOB_QUEUED;
            queue_add(a, j, true);
        } else {
            j->state = JOB_DONE; /* no password file now: the session decides */
            j->rc = SECURITY_NO_VERDICT;
            server_conn_resume(session_conn_ud(j->sc));
        }
    } else {
        j->state = JOB_DONE;
        server_conn_resume(session_conn_ud(j->sc));
    }
    pump(a);
    wake_others(a);
}

/* The first packet is a whole CONNECT that security_connect would hash a
 * password for: queue its check. Returns 1 (queued: wait), 0 (not such a
 * CONNECT: feed it to the session) or -1 (refused and closed). */
static int screen(daemon_auth_t *a, session_conn_t *sc, const uint8_t *buf, size_t len) {
    mqtt_packet_t pkt;
    mqtt5_packet_t pkt5;
    const mqtt_connect_t *p;
    bool v5 = false;
    if (mqtt_decode(buf, len, 0, &pkt) > 0 && pkt.type == MQTT_CONNECT) {
        p = &pkt.u.connect;
    } else if (mqtt5_decode(buf, len, 0, &pkt5) > 0 && pkt5.type == MQTT_CONNECT) {
        p = &pkt5.u.connect.c; /* MQTT 5: the same user name and password */
        v5 = true;
    } else {
        return 0;
    }
    const char *remote = session_conn_remote(sc);
    if (!security_will_hash(*a->sec, remote, session_conn_has_identity(sc) ? "" : NULL,
                            p->has_username, server_now_ms(a->srv)))
        return 0;
    uint32_t max_queue = (*a->cfg)->auth.max_hashing_queue;
    uint32_t running = atomic_load(&a->sh->running);
    size_t queued = atomic_load(&a->sh->queued);
    bool slot = running < (*a->cfg)->auth.max_hashing && queued == 0;
    if (!slot && queued >= max_queue) {
        static const uint8_t connack3[] = {0x20, 0x02, 0x00, MQTT_CONNACK_UNAVAILABLE};
        char why[200];
        snprintf(why, sizeof(why),
                 "connection refused (CONNACK %s): %" PRIu32 " password checks running and %zu "
                 "waiting (auth.max_hashing_queue %" PRIu32 ")",
                 v5 ? "0x89" : "3", running, queued, max_queue);
        a->refused++;
        if (v5) {
            /* MQTT 5: reason 0x89 server busy, with the reason string unless
             * that makes it larger than the client's maximum [MQTT-3.2.2-19]. */
            uint8_t b[256];
            mqtt5_props_t rp = {.present = 1ull << MQTT5_PROP_REASON_STRING,
                                .reason_string = {(const uint8_t *)why, strlen(why)}};
            uint32_t max = MQTT5_HAS(&pkt5.props, MQTT5_PROP_MAXIMUM_PACKET_SIZE)
                               ? pkt5.props.maximum_packet_size
                               : 0;
            size_t n = mqtt5_encode_connack(b, sizeof(b), false, MQTT5_RC_SERVER_BUSY, &rp);
            if (n > sizeof(b) || (max && n > max))
                n = mqtt5_encode_connack(b, sizeof(b), false, MQTT5_RC_SERVER_BUSY, NULL);
            (void)server_conn_send(session_conn_ud(sc), b, n);
        } else {
            (void)server_conn_send(session_conn_ud(sc), connack3, sizeof(connack3));
        }
        session_conn_close(sc, why);
        return -1;
    }
    auth_job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return 0; /* checked on the loop, as before */
    j->kind = DATA_JOB;
    j->a = a;
    j->sc = sc;
    list_init(&j->node);
    j->ulen = p->username.len;
    j->user = malloc(j->ulen + 1);
    j->pwlen = p->has_password ? p->password.len : 0;
    j->pw = p->has_password ? malloc(j->pwlen + 1) : NULL;
    if (!j->user || (p->has_password && !j->pw)) {
        job_free(j);
        return 0;
    }
    memcpy(j->user, p->username.ptr, j->ulen);
    if (j->pw)
        memcpy(j->pw, p->password.ptr, j->pwlen);
    j->db = security_db_ref(*a->sec);
    j->generation = security_generation(*a->sec);
    j->state = JOB_QUEUED;
    queue_add(a, j, false);
    session_conn_set_data(sc, j);
    server_conn_pause(session_conn_ud(sc));
    pump(a);
    return 1;
}

void daemon_auth_conn_open(daemon_auth_t *a, session_conn_t *sc) {
    session_conn_set_data(sc, a);
}

ssize_t daemon_auth_feed(session_conn_t *sc, const uint8_t *buf, size_t len) {
    data_kind_t *k = session_conn_data(sc);
    if (!k)
        return session_feed(sc, buf, len);
    if (*k == DATA_JOB) {
        auth_job_t *j = (auth_job_t *)k;
        if (j->state != JOB_DONE)
            return 0;
        session_conn_set_data(sc, NULL);
        security_t *sec = *j->a->sec;
        security_set_verdict(sec, j->rc);
        job_free(j);
        ssize_t r = session_feed(sc, buf, len);
        security_set_verdict(sec, SECURITY_NO_VERDICT);
        return r;
    }
    int r = screen((daemon_auth_t *)k, sc, buf, len);
    if (r < 0)
        return -1;
    if (r > 0)
        return 0;
    /* Not a whole CONNECT yet: screened again with more bytes. */
    mqtt_fixed_header_t fh;
    int h = mqtt_decode_fixed_header(buf, len, &fh);
    if (h < 0 || (h > 0 && len >= fh.header_len + (size_t)fh.remaining_length))
        session_conn_set_data(sc, NULL);
    return session_feed(sc, buf, len);
}

bool daemon_auth_screened(const session_conn_t *sc) {
    const data_kind_t *k = session_conn_data(sc);
    return !k || *k != DATA_AUTH;
}

static auth_job_t *job_of(const session_conn_t *sc) {
    data_kind_t *k = session_conn_data(sc);
    return k && *k == DATA_JOB ? (auth_job_t *)k : NULL;
}

bool daemon_auth_waiting(const session_conn_t *sc) {
    const auth_job_t *j = job_of(sc);
    return j && j->state != JOB_DONE;
}

void daemon_auth_conn_free(session_conn_t *sc) {
    auth_job_t *j = job_of(sc);
    if (j) {
        if (j->state == JOB_RUNNING) {
            j->sc = NULL; /* job_done frees it */
        } else {
            if (j->state == JOB_QUEUED)
                unqueue(j->a, j);
            job_free(j);
        }
    }
    session_conn_free(sc);
}

unsigned daemon_threadpool_size(const config_t *cfg, unsigned workers) {
    /* auth.max_hashing counts every worker's checks; each worker runs its
     * share (config_share) of the TLS handshake steps. */
    unsigned n = workers ? workers : 1;
    /* 2 for a spool's sync and checkpoint jobs: each worker's spool has its own. */
    unsigned spools = cfg->spool.enabled ? n : 1;
    unsigned share = config_share(cfg->mqtt.max_tls_handshake_workers, n);
    unsigned want = cfg->auth.max_hashing + n * share + 2 * spools;
    const char *env = getenv("UV_THREADPOOL_SIZE");
    if (env && *env) {
        unsigned have = (unsigned)strtoul(env, NULL, 10);
        /* The workers' shares: not the setting when it does not split
         * evenly (each worker runs at least one step). */
        char shares[48] = "";
        if (n * share != cfg->mqtt.max_tls_handshake_workers)
            snprintf(shares, sizeof(shares), " (%u workers x %u)", n, share);
        if (have < want)
            log_warn("UV_THREADPOOL_SIZE=%s is below auth.max_hashing + "
                     "mqtt.max_tls_handshake_workers%s + 2%s = %u: password checks, TLS "
                     "handshakes and the spool's fsync may wait for each other",
                     env, shares, spools > 1 ? " per worker's spool" : "", want);
        return have;
    }
    char buf[16];
    snprintf(buf, sizeof(buf), "%u", want);
    setenv("UV_THREADPOOL_SIZE", buf, 1);
    log_debug("libuv's threadpool: %u threads", want);
    return want;
}

/* ---- the session's auth ops over security_* (*sec read at each call: the
 * runtime owns that pointer and a reload replaces it) ---- */

static int ops_connect(void *ud, const char *addr, const char *identity, bool has_user,
                       const char *user, size_t ulen, bool has_pw, const uint8_t *pw, size_t pwlen,
                       uint64_t now_ms, uint32_t *delay_ms) {
    return security_connect(*(security_t **)ud, addr, identity, has_user, user, ulen, has_pw, pw,
                            pwlen, now_ms, delay_ms);
}

static bool ops_can_publish(void *ud, const char *user, const char *client_id, const char *topic,
                            size_t topic_len) {
    return security_can_publish(*(security_t **)ud, user, client_id, topic, topic_len);
}

static bool ops_can_subscribe(void *ud, const char *user, const char *client_id, const char *filter,
                              size_t len) {
    return security_can_subscribe(*(security_t **)ud, user, client_id, filter, len);
}

static bool ops_can_read(void *ud, const char *user, const char *client_id, const char *topic,
                         size_t topic_len) {
    return security_can_read(*(security_t **)ud, user, client_id, topic, topic_len);
}

static uint32_t ops_acl_generation(void *ud) {
    const security_t *sec = *(security_t **)ud;
    return security_has_acl(sec) ? security_generation(sec) : 0; /* a generation is never 0 */
}

session_auth_ops_t daemon_auth_session_ops(security_t **sec) {
    return (session_auth_ops_t){.connect = ops_connect,
                                .can_publish = ops_can_publish,
                                .acl_generation = ops_acl_generation,
                                .can_subscribe = ops_can_subscribe,
                                .can_read = ops_can_read,
                                .ud = sec};
}
