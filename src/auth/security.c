/* Authentication policy, ACL and throttle together (see security.h). */
#include "auth/security.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/rand.h>

#include "auth/acl.h"
#include "auth/passwd_file.h"
#include "mqtt/codec.h"
#include "util/hash.h"
#include "util/log.h"

#define THROTTLE_CAPACITY 4096

struct security {
    const config_auth_t *cfg;
    auth_db_t *db; /* NULL: no password file */
    acl_t *acl;    /* NULL: no ACL file */
    auth_throttle_t *throttle;
    uint64_t user_seed;         /* keys the user part of the throttle's keys */
    uint64_t refused_unchecked; /* refused before hashing (AUTH_THROTTLE_BURST) */
    uint64_t refused_held;      /* refused at once (AUTH_THROTTLE_MAX_HELD) */
    uint32_t generation;
    /* The throttle and the counters: every worker's CONNECTs (threads: N). */
    pthread_mutex_t mu;
};

/* A password file others can read (offline guessing of its hashes) or
 * write (a user of their own): warned about at every load, as Mosquitto
 * does. */
static void warn_permissions(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !(st.st_mode & (S_IROTH | S_IWOTH)))
        return;
    log_warn("auth.password_file %s: %s by every user (mode %04o): %s; chmod o-rw", path,
             st.st_mode & S_IWOTH ? "writable" : "readable", (unsigned)(st.st_mode & 07777),
             st.st_mode & S_IWOTH ? "anyone on the host can add a user"
                                  : "its hashes can be guessed offline");
}

/* A check costing more than this is warned about at load: the threadpool
 * keeps it off the loop, but auth.max_hashing of them at once bound the
 * logins per second. */
#define SLOW_CHECK_MS 10.0

/* Measures once what an unknown user's check costs (the most expensive
 * entry's hash, passwd_file.c) and warns when it is slow. */
static void warn_cost(const char *path, const auth_db_t *db) {
    unsigned it = auth_db_max_iterations(db);
    if (!it)
        return;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    (void)auth_db_check(db, NULL, 0, (const uint8_t *)"x", 1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    if (ms > SLOW_CHECK_MS)
        log_warn("auth.password_file %s: an entry with $7$ %u iterations costs %.1f ms per "
                 "CONNECT (measured at load; over %.0f ms): at most auth.max_hashing of them run "
                 "at once; mosquitto_passwd's default is 101",
                 path, it, ms, SLOW_CHECK_MS);
}

/* Loads both files into *db and *acl; on failure neither is returned. */
static int load_files(const config_auth_t *cfg, auth_db_t **db, acl_t **acl, char *errbuf,
                      size_t errlen) {
    *db = NULL;
    *acl = NULL;
    if (cfg->password_file) {
        *db = auth_db_load(cfg->password_file, errbuf, errlen);
        if (!*db)
            return -1;
        warn_permissions(cfg->password_file);
        warn_cost(cfg->password_file, *db);
    }
    if (cfg->acl_file) {
        *acl = acl_load(cfg->acl_file, errbuf, errlen);
        if (!*acl) {
            auth_db_free(*db);
            *db = NULL;
            return -1;
        }
    }
    return 0;
}

int security_new(const config_auth_t *cfg, security_t **out, char *errbuf, size_t errlen) {
    *out = NULL;
    security_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->throttle = auth_throttle_new(THROTTLE_CAPACITY))) {
        free(s);
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    s->cfg = cfg;
    pthread_mutex_init(&s->mu, NULL);
    if (RAND_bytes((unsigned char *)&s->user_seed, sizeof(s->user_seed)) != 1)
        s->user_seed = M2K_HASH_INIT ^ (uintptr_t)s;
    if (load_files(cfg, &s->db, &s->acl, errbuf, errlen) != 0) {
        security_free(s);
        return -1;
    }
    s->generation = 1;
    *out = s;
    return 0;
}

void security_free(security_t *s) {
    if (!s)
        return;
    auth_db_free(s->db);
    acl_free(s->acl);
    auth_throttle_free(s->throttle);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

struct security_update {
    auth_db_t *db;
    acl_t *acl;
};

int security_prepare(const config_auth_t *cfg, security_update_t **out, char *errbuf,
                     size_t errlen) {
    *out = NULL;
    security_update_t *u = calloc(1, sizeof(*u));
    if (!u) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    if (load_files(cfg, &u->db, &u->acl, errbuf, errlen) != 0) {
        free(u);
        return -1;
    }
    *out = u;
    return 0;
}

void security_commit(security_t *s, const config_auth_t *cfg, security_update_t *u) {
    auth_db_free(s->db);
    acl_free(s->acl);
    s->cfg = cfg;
    s->db = u->db;
    s->acl = u->acl;
    free(u);
    if (++s->generation == 0)
        s->generation = 1;
}

void security_update_free(security_update_t *u) {
    if (!u)
        return;
    auth_db_free(u->db);
    acl_free(u->acl);
    free(u);
}

int security_reload(security_t *s, char *errbuf, size_t errlen) {
    security_update_t *u;
    if (security_prepare(s->cfg, &u, errbuf, errlen) != 0)
        return -1;
    security_commit(s, s->cfg, u);
    return 0;
}

uint32_t security_generation(const security_t *s) {
    return s->generation;
}

bool security_has_acl(const security_t *s) {
    return s->acl != NULL;
}

void security_addr_ip(const char *addr, char *out, size_t cap) {
    if (!cap)
        return;
    size_t n;
    bool v6 = addr[0] == '[';
    if (v6) {
        const char *rb = strchr(addr, ']');
        addr++;
        n = rb ? (size_t)(rb - addr) : strlen(addr);
    } else {
        const char *colon = strrchr(addr, ':');
        n = colon ? (size_t)(colon - addr) : strlen(addr);
    }
    char host[INET6_ADDRSTRLEN];
    struct in6_addr a6;
    if (v6 && n < sizeof(host)) {
        memcpy(host, addr, n);
        host[n] = '\0';
        if (inet_pton(AF_INET6, host, &a6) == 1) {
            /* One IPv6 host usually owns a whole /64 (SLAAC, privacy
             * addresses): its addresses share one key, or every limit keyed
             * by address would be 2^64 times too generous. An IPv4-mapped
             * address stays the IPv4 address it is. */
            if (IN6_IS_ADDR_V4MAPPED(&a6)) {
                inet_ntop(AF_INET, &a6.s6_addr[12], host, sizeof(host));
                snprintf(out, cap, "%s", host);
            } else {
                memset(&a6.s6_addr[8], 0, 8);
                inet_ntop(AF_INET6, &a6, host, sizeof(host));
                snprintf(out, cap, "%s/64", host);
            }
            return;
        }
    }
    if (n >= cap)
        n = cap - 1;
    memcpy(out, addr, n);
    out[n] = '\0';
}

/* security_set_verdict: the next check's answer on this thread (the worker
 * that feeds the CONNECT), or SECURITY_NO_VERDICT. */
static _Thread_local int verdict = SECURITY_NO_VERDICT;

static int connect_locked(security_t *s, const char *addr, const char *identity, bool has_user,
                          const char *user, size_t ulen, bool has_pw, const uint8_t *pw,
                          size_t pwlen, uint64_t now_ms, uint32_t *delay_ms, int given);

int security_connect(security_t *s, const char *addr, const char *identity, bool has_user,
                     const char *user, size_t ulen, bool has_pw, const uint8_t *pw, size_t pwlen,
                     uint64_t now_ms, uint32_t *delay_ms) {
    int given = verdict;
    verdict = SECURITY_NO_VERDICT;
    pthread_mutex_lock(&s->mu);
    int rc = connect_locked(s, addr, identity, has_user, user, ulen, has_pw, pw, pwlen, now_ms,
                            delay_ms, given);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int connect_locked(security_t *s, const char *addr, const char *identity, bool has_user,
                          const char *user, size_t ulen, bool has_pw, const uint8_t *pw,
                          size_t pwlen, uint64_t now_ms, uint32_t *delay_ms, int given) {
    char ip[AUTH_THROTTLE_ADDR_MAX + 1];
    security_addr_ip(addr, ip, sizeof(ip));
    /* Every answer to an address with recent failures waits, the good ones
     * too: otherwise a guesser could treat a slow answer as a wrong guess
     * and move on without waiting. */
    *delay_ms = auth_throttle_delay_ms(s->throttle, ip, now_ms);
    if (*delay_ms && auth_throttle_held(s->throttle, ip, now_ms) >= AUTH_THROTTLE_MAX_HELD) {
        /* Refused at once, unchecked: one address cannot hold more answers
         * (connections, timers) than this, however many it opens. */
        *delay_ms = 0;
        s->refused_held++;
        return MQTT_CONNACK_BAD_CREDENTIALS;
    }
    if (*delay_ms)
        auth_throttle_hold(s->throttle, ip, *delay_ms, now_ms);
    /* The address and user name: a success forgets this user's failures
     * only, not those of the others guessed from the same address. */
    char ukey[AUTH_THROTTLE_ADDR_MAX + 1];
    snprintf(ukey, sizeof(ukey), "%.42s|%016" PRIx64, ip,
             m2k_hash_seed(s->user_seed, has_user ? user : "", has_user ? ulen : 0));
    int rc;
    bool checked = false; /* a password was checked */
    if (identity) {
        rc = MQTT_CONNACK_ACCEPTED; /* the certificate is the credential */
    } else if (!has_user) {
        rc = s->cfg->allow_anonymous ? MQTT_CONNACK_ACCEPTED : MQTT_CONNACK_NOT_AUTHORIZED;
    } else if (!s->db) {
        rc = MQTT_CONNACK_ACCEPTED; /* no password file: user names are labels only */
    } else if (auth_throttle_failures(s->throttle, ip, now_ms) >= AUTH_THROTTLE_BURST) {
        /* The address spent its failures: refused before hashing (the cost
         * a guesser makes us pay), right password or not, until one decays;
         * not counted, so one guess per AUTH_THROTTLE_DECAY_MS gets through. */
        s->refused_unchecked++;
        return MQTT_CONNACK_BAD_CREDENTIALS;
    } else {
        checked = true;
        int v = given != SECURITY_NO_VERDICT
                    ? given
                    : auth_db_check(s->db, user, ulen, has_pw ? pw : NULL, has_pw ? pwlen : 0);
        rc = v == AUTH_OK ? MQTT_CONNACK_ACCEPTED : MQTT_CONNACK_BAD_CREDENTIALS;
    }
    /* Only a verified password clears failures, and only its user's: an
     * anonymous or certificate login, or another user's, must not reset a
     * password guesser's count. */
    if (rc != MQTT_CONNACK_ACCEPTED) {
        auth_throttle_fail(s->throttle, ip, now_ms);
        auth_throttle_fail(s->throttle, ukey, now_ms);
    } else if (checked) {
        auth_throttle_forgive(s->throttle, ip, auth_throttle_failures(s->throttle, ukey, now_ms),
                              now_ms);
        auth_throttle_success(s->throttle, ukey, now_ms);
    }
    return rc;
}

bool security_will_hash(security_t *s, const char *addr, const char *identity, bool has_user,
                        uint64_t now_ms) {
    if (identity || !has_user || !s->db)
        return false;
    char ip[AUTH_THROTTLE_ADDR_MAX + 1];
    security_addr_ip(addr, ip, sizeof(ip));
    pthread_mutex_lock(&s->mu);
    bool hash = !(auth_throttle_delay_ms(s->throttle, ip, now_ms) &&
                  auth_throttle_held(s->throttle, ip, now_ms) >= AUTH_THROTTLE_MAX_HELD) &&
                auth_throttle_failures(s->throttle, ip, now_ms) < AUTH_THROTTLE_BURST;
    pthread_mutex_unlock(&s->mu);
    return hash;
}

auth_db_t *security_db_ref(security_t *s) {
    if (s->db)
        auth_db_ref(s->db);
    return s->db;
}

void security_set_verdict(security_t *s, int auth_rc) {
    (void)s;
    verdict = auth_rc;
}

uint64_t security_refused_unchecked(const security_t *s) {
    pthread_mutex_lock((pthread_mutex_t *)&s->mu);
    uint64_t n = s->refused_unchecked + s->refused_held;
    pthread_mutex_unlock((pthread_mutex_t *)&s->mu);
    return n;
}

bool security_can_read(const security_t *s, const char *user, const char *client_id,
                       const char *topic, size_t topic_len) {
    return !s->acl || acl_check(s->acl, user, client_id, topic, topic_len, ACL_READ);
}

bool security_can_subscribe(const security_t *s, const char *user, const char *client_id,
                            const char *filter, size_t filter_len) {
    return !s->acl || acl_can_subscribe(s->acl, user, client_id, filter, filter_len);
}

bool security_can_publish(const security_t *s, const char *user, const char *client_id,
                          const char *topic, size_t topic_len) {
    if (!s->acl)
        return true;
    return acl_can_publish(s->acl, user, client_id, topic, topic_len);
}
