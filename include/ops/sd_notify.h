/* systemd's notification protocol (sd_notify(3)) without libsystemd: one
 * datagram to $NOTIFY_SOCKET. Without NOTIFY_SOCKET (not run by systemd with
 * Type=notify) every call is a no-op returning 0.
 *
 * Messages the daemon sends:
 *   READY=1      listeners bound and Kafka metadata known
 *   RELOADING=1  / READY=1 around a SIGHUP reload
 *   STOPPING=1   at the start of the ordered shutdown
 *   STATUS=...   one human line shown by `systemctl status`
 *   WATCHDOG=1   every watchdog_usec / 2 from the loop thread, when enabled */
#ifndef M2K_SD_NOTIFY_H
#define M2K_SD_NOTIFY_H

#include <stdint.h>

#define SD_NOTIFY_ERR_ADDRESS (-1) /* NOTIFY_SOCKET is not an absolute path or '@' name */
#define SD_NOTIFY_ERR_SOCKET (-2)  /* socket(2) failed */
#define SD_NOTIFY_ERR_SEND (-3)    /* sendto(2) failed or sent a partial datagram */

/* Sends `state` (e.g. "READY=1\nSTATUS=serving") as one datagram. Returns 1
 * when sent, 0 without NOTIFY_SOCKET, or a negative SD_NOTIFY_ERR_*. Safe to
 * call from the loop thread at any time; opens and closes its own socket. */
int sd_notify_send(const char *state);

/* Like sd_notify_send with a printf format (message at most 1 KiB). */
int sd_notify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The watchdog interval in microseconds that systemd asks for (WatchdogSec=),
 * or 0 when it is off: WATCHDOG_USEC unset or invalid, or WATCHDOG_PID set to
 * another process. Ping with "WATCHDOG=1" at half this interval. */
uint64_t sd_notify_watchdog_usec(void);

const char *sd_notify_strerror(int err);

#endif
