/* A tiny fake MQTT broker for mqtt-bench --smoke: one thread, one epoll set,
 * accepts on 127.0.0.1 with a kernel-chosen port and answers what a publisher
 * needs (CONNACK, PUBACK, PUBREC, PUBCOMP, PINGRESP). It stores nothing and
 * forwards nothing; it only counts, so the smoke run can check that every
 * PUBLISH arrived. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mqtt_bench.h"
#include "mqtt/codec.h"

#define FAKE_MAX_PACKET (1u << 20)

typedef struct fake_client {
    struct fake_client *prev, *next; /* all open clients, freed at stop */
    int fd;
    uint8_t *in;
    size_t inlen, incap;
    uint8_t *out;
    size_t outlen, outcap;
} fake_client_t;

struct fake_broker {
    pthread_t thread;
    int lfd;
    int stopfd;
    int epfd;
    fake_client_t *clients;
    fake_stats_t stats;
};

static int fake_reserve(uint8_t **buf, size_t *cap, size_t need) {
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    uint8_t *nb = realloc(*buf, n);
    if (!nb)
        return -1;
    *buf = nb;
    *cap = n;
    return 0;
}

static void fake_client_free(fake_broker_t *fb, fake_client_t *fc) {
    if (fc->prev)
        fc->prev->next = fc->next;
    else
        fb->clients = fc->next;
    if (fc->next)
        fc->next->prev = fc->prev;
    close(fc->fd);
    free(fc->in);
    free(fc->out);
    free(fc);
}

/* Queues one answer (at most 4 bytes); returns -1 on allocation failure. */
static int fake_answer(fake_client_t *fc, const uint8_t *pkt, size_t len) {
    if (fake_reserve(&fc->out, &fc->outcap, fc->outlen + len) < 0)
        return -1;
    memcpy(fc->out + fc->outlen, pkt, len);
    fc->outlen += len;
    return 0;
}

/* Handles one decoded packet; returns -1 to close the connection. */
static int fake_handle(fake_broker_t *fb, fake_client_t *fc, const mqtt_packet_t *p) {
    uint8_t ans[4];
    size_t n = 0;
    switch (p->type) {
    case MQTT_CONNECT:
        fb->stats.connects++;
        n = mqtt_encode_connack(ans, sizeof(ans), false, MQTT_CONNACK_ACCEPTED);
        break;
    case MQTT_PUBLISH:
        fb->stats.publishes[p->u.publish.qos]++;
        if (p->u.publish.qos == 1)
            n = mqtt_encode_ack(ans, sizeof(ans), MQTT_PUBACK, p->u.publish.packet_id);
        else if (p->u.publish.qos == 2)
            n = mqtt_encode_ack(ans, sizeof(ans), MQTT_PUBREC, p->u.publish.packet_id);
        break;
    case MQTT_PUBREL:
        fb->stats.pubrels++;
        n = mqtt_encode_ack(ans, sizeof(ans), MQTT_PUBCOMP, p->u.packet_id);
        break;
    case MQTT_PINGREQ:
        fb->stats.pingreqs++;
        n = mqtt_encode_empty(ans, sizeof(ans), MQTT_PINGRESP);
        break;
    case MQTT_DISCONNECT:
        fb->stats.disconnects++;
        return -1;
    default:
        fb->stats.protocol_errors++;
        return -1;
    }
    return n ? fake_answer(fc, ans, n) : 0;
}

static int fake_flush(fake_broker_t *fb, fake_client_t *fc) {
    size_t off = 0;
    while (off < fc->outlen) {
        ssize_t w = send(fc->fd, fc->out + off, fc->outlen - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            break;
        }
        off += (size_t)w;
    }
    memmove(fc->out, fc->out + off, fc->outlen - off);
    fc->outlen -= off;
    struct epoll_event ev = {.events = EPOLLIN | (fc->outlen ? EPOLLOUT : 0u), .data.ptr = fc};
    epoll_ctl(fb->epfd, EPOLL_CTL_MOD, fc->fd, &ev);
    return 0;
}

/* Reads what is there and answers; returns -1 to close. */
static int fake_read(fake_broker_t *fb, fake_client_t *fc) {
    if (fake_reserve(&fc->in, &fc->incap, fc->inlen + 65536) < 0)
        return -1;
    ssize_t n = recv(fc->fd, fc->in + fc->inlen, fc->incap - fc->inlen, 0);
    if (n == 0)
        return -1;
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    fc->inlen += (size_t)n;
    size_t off = 0;
    int rc = 0;
    while (off < fc->inlen) {
        mqtt_packet_t p;
        ssize_t used = mqtt_decode(fc->in + off, fc->inlen - off, FAKE_MAX_PACKET, &p);
        if (used < 0) {
            fb->stats.protocol_errors++;
            return -1;
        }
        if (used == 0)
            break;
        off += (size_t)used;
        if (fake_handle(fb, fc, &p) < 0) {
            rc = -1;
            break;
        }
    }
    memmove(fc->in, fc->in + off, fc->inlen - off);
    fc->inlen -= off;
    if (fake_flush(fb, fc) < 0)
        return -1;
    return rc;
}

static void fake_accept(fake_broker_t *fb) {
    for (;;) {
        int fd = accept4(fb->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        fake_client_t *fc = calloc(1, sizeof(*fc));
        if (!fc) {
            close(fd);
            continue;
        }
        fc->fd = fd;
        fc->next = fb->clients;
        if (fb->clients)
            fb->clients->prev = fc;
        fb->clients = fc;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = fc};
        if (epoll_ctl(fb->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            fake_client_free(fb, fc);
    }
}

static void *fake_thread(void *arg) {
    fake_broker_t *fb = arg;
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(fb->epfd, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &fb->stopfd)
                return NULL;
            if (evs[i].data.ptr == &fb->lfd) {
                fake_accept(fb);
                continue;
            }
            fake_client_t *fc = evs[i].data.ptr;
            int rc = 0;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                rc = fake_read(fb, fc);
            if (rc == 0 && (evs[i].events & EPOLLOUT))
                rc = fake_flush(fb, fc);
            if (rc < 0)
                fake_client_free(fb, fc); /* close() also removes it from the epoll set */
        }
    }
}

int fake_broker_start(fake_broker_t **out, uint16_t *port) {
    fake_broker_t *fb = calloc(1, sizeof(*fb));
    if (!fb)
        return -1;
    fb->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    fb->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    fb->epfd = epoll_create1(EPOLL_CLOEXEC);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &fb->lfd};
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &fb->stopfd};
    if (fb->lfd < 0 || fb->stopfd < 0 || fb->epfd < 0 ||
        bind(fb->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fb->lfd, 1024) < 0 ||
        getsockname(fb->lfd, (struct sockaddr *)&sa, &len) < 0 ||
        epoll_ctl(fb->epfd, EPOLL_CTL_ADD, fb->lfd, &lev) < 0 ||
        epoll_ctl(fb->epfd, EPOLL_CTL_ADD, fb->stopfd, &sev) < 0 ||
        pthread_create(&fb->thread, NULL, fake_thread, fb) != 0)
        goto fail;
    *port = ntohs(sa.sin_port);
    *out = fb;
    return 0;
fail:
    if (fb->lfd >= 0)
        close(fb->lfd);
    if (fb->stopfd >= 0)
        close(fb->stopfd);
    if (fb->epfd >= 0)
        close(fb->epfd);
    free(fb);
    return -1;
}

void fake_broker_stop(fake_broker_t *fb, fake_stats_t *stats) {
    uint64_t one = 1;
    if (write(fb->stopfd, &one, sizeof(one)) != sizeof(one))
        abort(); /* an eventfd write of 1 cannot fail */
    pthread_join(fb->thread, NULL);
    if (stats)
        *stats = fb->stats;
    while (fb->clients)
        fake_client_free(fb, fb->clients);
    close(fb->lfd);
    close(fb->stopfd);
    close(fb->epfd);
    free(fb);
}
