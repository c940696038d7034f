/*
 * C test harness for include/punktfunk_core.h, linked against the static
 * library. Built with -std=c11 -Wall -Wextra -Werror and run by `npm test`,
 * directly and under valgrind memcheck (scripts/test-c.sh).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "punktfunk_core.h"

/* A key context for raw sessions whose other arguments are under test. */
#define CTX (const uint8_t *)"harness", 7

static int failures = 0;

#define CHECK(cond, ...)                                                 \
    do {                                                                 \
        if (!(cond)) {                                                   \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                \
            fprintf(stderr, " (last error: %s)\n", punktfunk_last_error_message()); \
            failures++;                                                  \
        }                                                                \
    } while (0)

#define CHECK_STATUS(expr, want)                                                  \
    do {                                                                          \
        int32_t got_ = (expr);                                                    \
        CHECK(got_ == (want), "%s returned %s (%d), want %s", #expr,               \
              punktfunk_status_code(got_), (int)got_, punktfunk_status_code(want)); \
    } while (0)

/* Deterministic pseudo-random bytes (xorshift32). */
static void fill(uint8_t *buf, size_t len, uint32_t seed) {
    uint32_t x = seed * 2654435761u + 1u;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (uint8_t)x;
    }
}

/* Waits for the next event that is not NONE, up to ~5 s. */
static int32_t next_event(PunktfunkSession *client, PunktfunkFrameEvent *ev) {
    for (int i = 0; i < 50; i++) {
        int32_t st = punktfunk_client_wait_frame(client, 100, ev);
        if (st != PUNKTFUNK_OK || ev->kind != PUNKTFUNK_EVENT_NONE) return st;
    }
    return PUNKTFUNK_ERR_TIMEOUT;
}

static void test_abi_and_errors(void) {
    CHECK(punktfunk_abi_version() == PUNKTFUNK_ABI_VERSION, "abi %u", punktfunk_abi_version());
    CHECK(strcmp(punktfunk_status_code(PUNKTFUNK_ERR_CLOSED), "ERR_PF_CLOSED") == 0, "status code string");
    CHECK(strcmp(punktfunk_status_code(12345), "UNKNOWN") == 0, "unknown status");
    CHECK(PUNKTFUNK_ERR_UNAUTHORIZED == -9 &&
              strcmp(punktfunk_status_code(PUNKTFUNK_ERR_UNAUTHORIZED), "ERR_PF_UNAUTHORIZED") == 0,
          "unauthorized status");
    CHECK(PUNKTFUNK_ERR_INSECURE_KEY == -10 &&
              strcmp(punktfunk_status_code(PUNKTFUNK_ERR_INSECURE_KEY), "ERR_PF_INSECURE_KEY") == 0,
          "insecure key status");
#if defined(PUNKTFUNK_FEATURE_QUIC)
    CHECK(PUNKTFUNK_CLOSE_UNAUTHORIZED == 5, "unauthorized close code");
#endif
}

static void test_null_and_bad_arguments(void) {
    PunktfunkSessionConfig cfg;
    PunktfunkFrameEvent ev;
    PunktfunkStats stats;
    PunktfunkSession *s = NULL, *h = NULL, *c = NULL;
    char addr[PUNKTFUNK_ADDRESS_MAX];
    uint8_t secret[32] = {1};

    CHECK_STATUS(punktfunk_session_config_default(NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(strstr(punktfunk_last_error_message(), "ERR_PF_INVALID_ARG") != NULL, "message names the code");
    CHECK_STATUS(punktfunk_impairment_default(NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_loopback_pair_new(NULL, NULL, NULL, &c), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_loopback_pair_new(NULL, NULL, &h, NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, NULL, NULL, secret, 32, CTX, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", NULL, NULL, 32, CTX, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", NULL, secret, 32, CTX, NULL, NULL),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_new_udp(7, "127.0.0.1:0", NULL, secret, 32, CTX, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", NULL, secret, 8, CTX, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG); /* secret too short */
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "\xff\xfe:0", NULL, secret, 32, CTX, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG); /* not UTF-8 */
    CHECK(strstr(punktfunk_last_error_message(), "UTF-8") != NULL, "UTF-8 named: %s", punktfunk_last_error_message());
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "localhost", NULL, secret, 32, CTX, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
    /* An empty key context: a secret kept between runs would repeat nonces. */
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", NULL, secret, 32, NULL, 0, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(strstr(punktfunk_last_error_message(), "context is empty") != NULL, "empty context named: %s",
          punktfunk_last_error_message());
    CHECK(s == NULL, "no handle on failure");
    CHECK_STATUS(punktfunk_host_submit_frame(NULL, secret, 4, 0, false), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_poll_frame(NULL, &ev), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_wait_frame(NULL, 1, &ev), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_stats(NULL, &stats), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_set_fec_percent(NULL, 10), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_connect(NULL, "127.0.0.1:1"), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_local_address(NULL, addr, sizeof addr), PUNKTFUNK_ERR_INVALID_ARG);
    punktfunk_session_free(NULL); /* accepted */

    /* Option structs: a struct_size below any known layout is refused. */
    CHECK_STATUS(punktfunk_session_config_default(&cfg), PUNKTFUNK_OK);
    CHECK(cfg.struct_size == sizeof cfg, "struct_size set by default()");
    cfg.struct_size = 4;
    CHECK_STATUS(punktfunk_loopback_pair_new(&cfg, NULL, &h, &c), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_config_default(&cfg), PUNKTFUNK_OK);
    cfg.fec_percent = 101;
    CHECK_STATUS(punktfunk_loopback_pair_new(&cfg, NULL, &h, &c), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(h == NULL && c == NULL, "no handles on failure");

    /* With a live handle: NULL outputs and data, bad values. */
    CHECK_STATUS(punktfunk_loopback_pair_new(NULL, NULL, &h, &c), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_client_poll_frame(c, NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_stats(c, NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_submit_frame(h, NULL, 10, 0, false), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_set_fec_percent(h, 101), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_local_address(h, addr, sizeof addr), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_connect(h, "127.0.0.1:9"), PUNKTFUNK_ERR_INVALID_ARG);
    memset(&stats, 0, sizeof stats);
    CHECK_STATUS(punktfunk_session_stats(c, &stats), PUNKTFUNK_ERR_INVALID_ARG); /* struct_size 0 */
    /* An empty frame is a frame. */
    CHECK_STATUS(punktfunk_host_submit_frame(h, NULL, 0, 5, true), PUNKTFUNK_OK);
    CHECK_STATUS(next_event(c, &ev), PUNKTFUNK_OK);
    CHECK(ev.kind == PUNKTFUNK_EVENT_FRAME && ev.len == 0 && ev.pts == 5 && ev.keyframe, "empty frame");
    punktfunk_session_free(h);
    punktfunk_session_free(c);
}

enum { FRAMES = 6 };

static void test_loopback_with_loss(void) {
    static const size_t sizes[FRAMES] = {1, 1344, 100000, 3 * 1024 * 1024 + 17, 5000, 777777};
    PunktfunkSessionConfig cfg;
    PunktfunkImpairment imp;
    PunktfunkSession *host = NULL, *client = NULL;
    PunktfunkFrameEvent ev;
    PunktfunkStats hs, cs;
    uint64_t total = 0, recovered = 0;

    CHECK_STATUS(punktfunk_session_config_default(&cfg), PUNKTFUNK_OK);
    cfg.fec_percent = 25; /* 1 in 8 lost = 12.5 %: inside 25 % FEC */
    CHECK_STATUS(punktfunk_impairment_default(&imp), PUNKTFUNK_OK);
    imp.drop_every_nth = 8;
    CHECK_STATUS(punktfunk_loopback_pair_new(&cfg, &imp, &host, &client), PUNKTFUNK_OK);
    if (!host || !client) return;

    for (int i = 0; i < FRAMES; i++) {
        uint8_t *buf = malloc(sizes[i]);
        fill(buf, sizes[i], (uint32_t)i + 1);
        CHECK_STATUS(punktfunk_host_submit_frame(host, buf, sizes[i], 1000u * (uint64_t)i, i == 3), PUNKTFUNK_OK);
        free(buf);
        total += sizes[i];
    }
    for (int i = 0; i < FRAMES; i++) {
        CHECK_STATUS(next_event(client, &ev), PUNKTFUNK_OK);
        CHECK(ev.kind == PUNKTFUNK_EVENT_FRAME, "frame %d: kind %u", i, ev.kind);
        if (ev.kind != PUNKTFUNK_EVENT_FRAME) continue;
        uint8_t *want = malloc(sizes[i]);
        fill(want, sizes[i], (uint32_t)i + 1);
        CHECK(ev.index == (uint64_t)i, "index %llu", (unsigned long long)ev.index);
        CHECK(ev.len == sizes[i], "frame %d: %zu bytes, want %zu", i, ev.len, sizes[i]);
        CHECK(ev.len == sizes[i] && memcmp(ev.data, want, sizes[i]) == 0, "frame %d differs", i);
        CHECK(ev.pts == 1000u * (uint64_t)i && ev.keyframe == (i == 3), "frame %d metadata", i);
        recovered += ev.recovered_shards;
        free(want);
    }
    CHECK_STATUS(punktfunk_client_poll_frame(client, &ev), PUNKTFUNK_OK);
    CHECK(ev.kind == PUNKTFUNK_EVENT_NONE, "nothing more");

    hs.struct_size = sizeof hs;
    cs.struct_size = sizeof cs;
    CHECK_STATUS(punktfunk_session_stats(host, &hs), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_session_stats(client, &cs), PUNKTFUNK_OK);
    CHECK(hs.frames_submitted == FRAMES, "host submitted %llu", (unsigned long long)hs.frames_submitted);
    CHECK(cs.frames_completed == FRAMES, "client completed %llu", (unsigned long long)cs.frames_completed);
    CHECK(cs.frames_dropped == 0, "dropped %llu", (unsigned long long)cs.frames_dropped);
    CHECK(cs.payload_bytes_delivered == total, "delivered %llu of %llu", (unsigned long long)cs.payload_bytes_delivered,
          (unsigned long long)total);
    CHECK(recovered > 0 && cs.fec_recovered_shards == recovered, "FEC recovered %llu (frames say %llu)",
          (unsigned long long)cs.fec_recovered_shards, (unsigned long long)recovered);
    /* Every 8th datagram dropped: the client saw 7/8 of what the host sent. */
    CHECK(cs.packets_received == hs.packets_sent - hs.packets_sent / 8, "received %llu of %llu",
          (unsigned long long)cs.packets_received, (unsigned long long)hs.packets_sent);
    CHECK(cs.recv_dropped_auth == 0 && cs.recv_dropped_malformed == 0, "no bad packets");
    printf("loopback: %d frames (%llu bytes) byte-exact with 1 in 8 datagrams dropped, %llu shards rebuilt by FEC\n",
           FRAMES, (unsigned long long)total, (unsigned long long)recovered);
    punktfunk_session_free(host);
    punktfunk_session_free(client);
}

static void udp_round_trip(const PunktfunkSessionConfig *cfg, const char *label) {
    uint8_t secret[32];
    char host_addr[PUNKTFUNK_ADDRESS_MAX], client_addr[PUNKTFUNK_ADDRESS_MAX];
    PunktfunkSession *host = NULL, *client = NULL;
    PunktfunkFrameEvent ev;
    static uint8_t frame[200000];

    fill(secret, sizeof secret, 99);
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_CLIENT, "127.0.0.1:0", NULL, secret, sizeof secret,
                                           (const uint8_t *)"udp", 3, cfg, &client),
                 PUNKTFUNK_OK);
    if (!client) return;
    CHECK_STATUS(punktfunk_session_local_address(client, client_addr, sizeof client_addr), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_session_local_address(client, client_addr, 4), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_local_address(client, client_addr, sizeof client_addr), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", client_addr, secret, sizeof secret,
                                           (const uint8_t *)"udp", 3, cfg, &host),
                 PUNKTFUNK_OK);
    if (!host) {
        punktfunk_session_free(client);
        return;
    }
    CHECK_STATUS(punktfunk_session_local_address(host, host_addr, sizeof host_addr), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_session_connect(client, host_addr), PUNKTFUNK_OK);
    for (int i = 0; i < 3; i++) {
        fill(frame, sizeof frame, 500u + (uint32_t)i);
        CHECK_STATUS(punktfunk_host_submit_frame(host, frame, sizeof frame, (uint64_t)i, false), PUNKTFUNK_OK);
        CHECK_STATUS(next_event(client, &ev), PUNKTFUNK_OK);
        CHECK(ev.kind == PUNKTFUNK_EVENT_FRAME && ev.len == sizeof frame && memcmp(ev.data, frame, sizeof frame) == 0,
              "UDP frame %d (%s)", i, label);
    }
    printf("udp (%s): 3 frames %s -> %s byte-exact\n", label, host_addr, client_addr);
    punktfunk_session_free(host);
    punktfunk_session_free(client);
}

static void test_udp(void) {
    udp_round_trip(NULL, "defaults: GSO/GRO where available");
    PunktfunkSessionConfig cfg;
    punktfunk_session_config_default(&cfg);
    cfg.pacing = 1;
    cfg.pacing_fixed_rate_kbps = 400000;
    cfg.udp_offload = PUNKTFUNK_OFFLOAD_OFF;
    cfg.busy_poll = 1;
    udp_round_trip(&cfg, "paced at 400 Mbit/s, sendmmsg/recvmmsg, busy polling");

    uint8_t secret[32];
    PunktfunkSession *s = NULL;
    fill(secret, sizeof secret, 7);
    cfg.udp_offload = 7;
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", NULL, secret, sizeof secret, CTX,
                                           &cfg, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(s == NULL, "no session for a bad udp_offload");
    cfg.udp_offload = PUNKTFUNK_OFFLOAD_AUTO;
    cfg.pacing = 2;
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", NULL, secret, sizeof secret, CTX,
                                           &cfg, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
}

/* The last error message is per thread: empty on a thread that never failed. */
static void *fresh_thread_error(void *arg) {
    (void)arg;
    return (void *)(strcmp(punktfunk_last_error_message(), "") == 0 ? "empty" : "not empty");
}

/* A caller struct from a newer header: ours followed by fields we do not know. */
typedef struct {
    PunktfunkSessionConfig cfg;
    uint8_t newer[64];
} NewerConfig;

typedef struct {
    PunktfunkStats stats;
    uint8_t canary[32];
} NewerStats;

static int all_bytes(const uint8_t *p, size_t n, uint8_t v) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != v) return 0;
    return 1;
}

/* Bad input beyond NULLs: huge lengths, out-of-range fields, struct sizes,
 * zero-size outputs. Each is refused with a status and the library keeps working. */
static void test_lengths_sizes_and_ranges(void) {
    uint8_t secret[32] = {1};
    static uint8_t frame[2000];
    PunktfunkSession *s, *h = NULL, *c = NULL;
    PunktfunkSessionConfig cfg;
    PunktfunkImpairment imp;
    PunktfunkFrameEvent ev;
    char addr[PUNKTFUNK_ADDRESS_MAX];
    pthread_t t;
    void *seen = NULL;

    /* Error state. */
    CHECK_STATUS(punktfunk_session_config_default(NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(pthread_create(&t, NULL, fresh_thread_error, NULL) == 0, "thread");
    pthread_join(t, &seen);
    CHECK(seen && strcmp(seen, "empty") == 0, "another thread's last error is its own (%s)", (const char *)seen);
    CHECK(strcmp(punktfunk_status_code(PUNKTFUNK_OK), "OK") == 0, "OK");
    CHECK(strcmp(punktfunk_status_code(PUNKTFUNK_ERR_INTERNAL), "ERR_PF_INTERNAL") == 0, "internal");
    CHECK(strcmp(punktfunk_status_code(1), "UNKNOWN") == 0 && strcmp(punktfunk_status_code(INT32_MIN), "UNKNOWN") == 0,
          "positive and extreme statuses are unknown");

    /* Lengths the library checks before touching the memory. A failed call
     * clears the caller's handle, whatever it held before. */
    s = (PunktfunkSession *)secret;
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", NULL, secret, SIZE_MAX, CTX, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(s == NULL, "the handle is cleared on failure");
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", NULL, secret, 32, secret, SIZE_MAX, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", NULL, secret, 32, NULL, 5, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG); /* NULL context with a length */
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", NULL, NULL, 0, CTX, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG); /* no secret at all */
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", "\xff:1", secret, 32, CTX, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", "nowhere", secret, 32, CTX, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "192.0.2.1:0", NULL, secret, 32, CTX, NULL, &s),
                 PUNKTFUNK_ERR_IO); /* not a local address */
    CHECK(s == NULL, "no handle on failure");

    /* Option structs: older and newer layouts, and every range. */
    NewerConfig newer;
    memset(&newer, 0xAA, sizeof newer);
    CHECK_STATUS(punktfunk_session_config_default(&newer.cfg), PUNKTFUNK_OK);
    newer.cfg.struct_size = sizeof newer;
    CHECK_STATUS(punktfunk_loopback_pair_new(&newer.cfg, NULL, &h, &c), PUNKTFUNK_OK); /* unknown tail ignored */
    punktfunk_session_free(h);
    punktfunk_session_free(c);
    h = c = NULL;
    CHECK_STATUS(punktfunk_session_config_default(&cfg), PUNKTFUNK_OK);
    cfg.struct_size = offsetof(PunktfunkSessionConfig, pacing); /* the first layout */
    cfg.pacing = 7;                                               /* beyond it: not read */
    CHECK_STATUS(punktfunk_loopback_pair_new(&cfg, NULL, &h, &c), PUNKTFUNK_OK);
    punktfunk_session_free(h);
    punktfunk_session_free(c);
    h = c = NULL;
    cfg.struct_size = offsetof(PunktfunkSessionConfig, pacing) - 4;
    CHECK_STATUS(punktfunk_loopback_pair_new(&cfg, NULL, &h, &c), PUNKTFUNK_ERR_INVALID_ARG);
    for (int i = 0; i < 9; i++) {
        CHECK_STATUS(punktfunk_session_config_default(&cfg), PUNKTFUNK_OK);
        switch (i) {
        case 0: cfg.max_frame_bytes = UINT64_MAX; break;
        case 1: cfg.shard_payload = 63; break;
        case 2: cfg.max_data_shards = 0; break;
        case 3: cfg.max_frames_in_flight = UINT32_MAX; break;
        case 4: cfg.frame_timeout_ms = 0; break;
        case 5: cfg.max_index_lag = 0; break;
        case 6: cfg.recv_coalesce_us = UINT32_MAX; break;
        case 7: cfg.pacing = 1; cfg.pacing_rate_percent = 50; break;
        default: cfg.busy_poll = 2; break;
        }
        CHECK_STATUS(punktfunk_loopback_pair_new(&cfg, NULL, &h, &c), PUNKTFUNK_ERR_INVALID_ARG);
        CHECK(h == NULL && c == NULL, "config case %d: no handles", i);
    }
    for (int i = 0; i < 7; i++) {
        CHECK_STATUS(punktfunk_impairment_default(&imp), PUNKTFUNK_OK);
        switch (i) {
        case 0: imp.struct_size = 0; break;
        case 1: imp.loss_percent = NAN; break;
        case 2: imp.loss_percent = 150; break;
        case 3: imp.reorder_depth = UINT32_MAX; break;
        case 4: imp.burst_good_to_bad_percent = NAN; break; /* not "off": refused */
        case 5: imp.burst_good_to_bad_percent = -5; break;
        default: imp.burst_good_to_bad_percent = 1; imp.burst_bad_to_good_percent = 200; break;
        }
        CHECK_STATUS(punktfunk_loopback_pair_new(NULL, &imp, &h, &c), PUNKTFUNK_ERR_INVALID_ARG);
        CHECK(h == NULL && c == NULL, "impairment case %d: no handles", i);
    }

    /* Frame length limit, huge lengths and timeouts, out-of-range FEC. */
    CHECK_STATUS(punktfunk_session_config_default(&cfg), PUNKTFUNK_OK);
    cfg.max_frame_bytes = 1000;
    CHECK_STATUS(punktfunk_loopback_pair_new(&cfg, NULL, &h, &c), PUNKTFUNK_OK);
    if (!h || !c) return;
    fill(frame, sizeof frame, 3);
    CHECK_STATUS(punktfunk_host_submit_frame(h, frame, 1001, 0, false), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(strstr(punktfunk_last_error_message(), "max_frame_bytes") != NULL, "names the limit: %s",
          punktfunk_last_error_message());
    CHECK_STATUS(punktfunk_host_submit_frame(h, frame, SIZE_MAX, 0, false), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_set_fec_percent(h, UINT32_MAX), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_set_fec_percent(h, 256), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_wait_frame(c, 0, &ev), PUNKTFUNK_OK);
    CHECK(ev.kind == PUNKTFUNK_EVENT_NONE, "a zero timeout returns at once");
    CHECK_STATUS(punktfunk_client_wait_frame(c, 5, NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_submit_frame(h, frame, 1000, 9, false), PUNKTFUNK_OK);
    /* The longest timeout there is: returns as soon as the frame is there. */
    CHECK_STATUS(punktfunk_client_wait_frame(c, UINT32_MAX, &ev), PUNKTFUNK_OK);
    CHECK(ev.kind == PUNKTFUNK_EVENT_FRAME && ev.index == 0 && ev.pts == 9 && ev.len == 1000 &&
              memcmp(ev.data, frame, 1000) == 0,
          "the refused frames left no trace; the next one arrives");

    /* Output structs: too small is refused; bigger (newer) ones get only what we know. */
    NewerStats ns;
    memset(&ns, 0x5A, sizeof ns);
    ns.stats.struct_size = 8;
    CHECK_STATUS(punktfunk_session_stats(c, &ns.stats), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(all_bytes((const uint8_t *)&ns + 4, sizeof ns - 4, 0x5A), "a refused struct is not written");
    ns.stats.struct_size = sizeof ns;
    CHECK_STATUS(punktfunk_session_stats(c, &ns.stats), PUNKTFUNK_OK);
    CHECK(ns.stats.struct_size == sizeof ns && ns.stats.frames_completed == 1, "counters written, struct_size kept");
    CHECK(all_bytes(ns.canary, sizeof ns.canary, 0x5A), "nothing written past the fields we know");
    CHECK(ns.stats.rate_state == PUNKTFUNK_RATE_STATE_NONE, "a data-plane session has no rate controller");
    /* A program built before the rate controller's state was appended gets what it knew. */
    memset(&ns, 0x5A, sizeof ns);
    ns.stats.struct_size = offsetof(PunktfunkStats, rate_state);
    CHECK_STATUS(punktfunk_session_stats(c, &ns.stats), PUNKTFUNK_OK);
    CHECK(ns.stats.frames_completed == 1 && ns.stats.queue_delay_us == 0, "the earlier layout is filled");
    CHECK(all_bytes((const uint8_t *)&ns.stats.rate_state, sizeof ns - offsetof(PunktfunkStats, rate_state), 0x5A),
          "nothing written past the earlier layout");
    punktfunk_session_free(h);
    punktfunk_session_free(c);

    /* Zero-size and NULL outputs, bad peers on a live UDP session. */
    s = NULL;
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", NULL, secret, 32, CTX, NULL, &s),
                 PUNKTFUNK_OK);
    if (!s) return;
    memset(addr, 'x', sizeof addr);
    CHECK_STATUS(punktfunk_session_local_address(s, addr, 0), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(addr[0] == 'x', "a zero-size buffer is not written");
    CHECK_STATUS(punktfunk_session_local_address(s, NULL, sizeof addr), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_connect(s, NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_connect(s, "\xff"), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_connect(s, "nowhere:1"), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_connect(s, "[::1]:9"), PUNKTFUNK_ERR_IO); /* IPv6 peer, IPv4 socket */
    /* Without a peer there is nobody to send to; once connected it works. */
    CHECK_STATUS(punktfunk_host_submit_frame(s, frame, 10, 0, false), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(strstr(punktfunk_last_error_message(), "punktfunk_session_connect") != NULL, "the error says what to do");
    CHECK_STATUS(punktfunk_session_connect(s, "127.0.0.1:9"), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_host_submit_frame(s, frame, 10, 0, false), PUNKTFUNK_OK);
    punktfunk_session_free(s);
}

static void test_panic_is_contained(void) {
    PunktfunkSession *h = NULL, *c = NULL;
    PunktfunkFrameEvent ev;
    CHECK_STATUS(punktfunk_debug_panic(), PUNKTFUNK_ERR_INTERNAL);
    CHECK(strstr(punktfunk_last_error_message(), "panic") != NULL, "message mentions the panic");
    /* The process lives on and the library still works. */
    CHECK_STATUS(punktfunk_loopback_pair_new(NULL, NULL, &h, &c), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_host_submit_frame(h, (const uint8_t *)"alive", 5, 0, false), PUNKTFUNK_OK);
    CHECK_STATUS(next_event(c, &ev), PUNKTFUNK_OK);
    CHECK(ev.kind == PUNKTFUNK_EVENT_FRAME && ev.len == 5 && memcmp(ev.data, "alive", 5) == 0, "after panic");
    punktfunk_session_free(h);
    punktfunk_session_free(c);
}


#if defined(PUNKTFUNK_FEATURE_QUIC)
enum { QUIC_FRAMES = 3 };
static const size_t quic_sizes[QUIC_FRAMES] = {10, 2 * 1024 * 1024, 50000};

struct host_result {
    int inputs, key_down, mouse_move, axis, keyframe_request;
    uint64_t first_lost;
    int32_t status;
};

static void *host_thread(void *arg) {
    PunktfunkHost *host = arg;
    static struct host_result r;
    PunktfunkHostSession *s = NULL;
    /* The first client presents a wrong pin: its handshake fails; keep accepting. */
    for (int tries = 0; tries < 5 && s == NULL; tries++) punktfunk_host_accept(host, 10000, &s);
    if (!s) {
        r.status = PUNKTFUNK_ERR_TIMEOUT;
        return &r;
    }
    for (int i = 0; i < QUIC_FRAMES; i++) {
        uint8_t *buf = malloc(quic_sizes[i]);
        fill(buf, quic_sizes[i], 900u + (uint32_t)i);
        int32_t st = punktfunk_host_session_submit_frame(s, buf, quic_sizes[i], (uint64_t)i, i == 0);
        free(buf);
        if (st != PUNKTFUNK_OK) r.status = st;
    }
    PunktfunkHostEvent ev;
    /* Only quiet waits count against the budget: target-bitrate events keep
     * coming while a slow client (under valgrind) still reads the frames. */
    for (int idle = 0; idle < 100 && (r.inputs < 3 || !r.keyframe_request);) {
        if (punktfunk_host_session_next_event(s, 100, &ev) != PUNKTFUNK_OK) break;
        if (ev.kind == PUNKTFUNK_HOST_EVENT_NONE) idle++;
        if (ev.kind == PUNKTFUNK_HOST_EVENT_INPUT) {
            r.inputs++;
            r.key_down += ev.input.kind == PUNKTFUNK_INPUT_KEY_DOWN && ev.input.code == 44;
            r.mouse_move += ev.input.kind == PUNKTFUNK_INPUT_MOUSE_MOVE && ev.input.dx == -4 && ev.input.dy == 9;
            r.axis += ev.input.kind == PUNKTFUNK_INPUT_GAMEPAD_AXIS && ev.input.axis == PUNKTFUNK_AXIS_LEFT_TRIGGER &&
                      ev.input.value == 32000;
        } else if (ev.kind == PUNKTFUNK_HOST_EVENT_KEYFRAME_REQUEST) {
            r.keyframe_request = 1;
            r.first_lost = ev.first_lost;
        }
    }
    punktfunk_host_session_close(s, PUNKTFUNK_CLOSE_NORMAL, "end of stream");
    punktfunk_host_session_free(s);
    return &r;
}

static void test_quic(void) {
    char dir[] = "/tmp/punktfunk-c-XXXXXX";
    char addr[PUNKTFUNK_ADDRESS_MAX], fp[PUNKTFUNK_FINGERPRINT_LEN], seen[PUNKTFUNK_FINGERPRINT_LEN];
    PunktfunkHost *host = NULL;
    PunktfunkClient *client = NULL;
    PunktfunkFrameEvent ev;
    pthread_t t;
    CHECK(mkdtemp(dir) != NULL, "temp dir");
    /* Rate adaptation starts at 1 Gbit/s here: this test is about the control
       plane, and under valgrind a 2 MB frame paced from the default 10 Mbit/s
       start would take longer than the harness waits (test_quic_options
       covers the start-up). */
    PunktfunkHostOptions opts;
    punktfunk_host_options_default(&opts);
    opts.initial_kbps = 1000000;
    CHECK_STATUS(punktfunk_host_listen_with("127.0.0.1:0", dir, NULL, &opts, NULL, 0, &host), PUNKTFUNK_OK);
    if (!host) return;
    CHECK_STATUS(punktfunk_host_local_address(host, addr, sizeof addr), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_host_fingerprint(host, fp, sizeof fp), PUNKTFUNK_OK);
    CHECK(strlen(fp) == 64, "fingerprint is 64 hex digits: %s", fp);
    CHECK(pthread_create(&t, NULL, host_thread, host) == 0, "host thread");

    /* A wrong pin: refused, typed status, no handle. */
    CHECK_STATUS(punktfunk_client_connect(addr, "0000000000000000000000000000000000000000000000000000000000000000", NULL,
                                          10000, NULL, &client),
                 PUNKTFUNK_ERR_PIN_MISMATCH);
    CHECK(client == NULL, "no handle after a pin mismatch");
    /* Generous frame timeout: under valgrind a 2 MB frame takes a while to reassemble. */
    PunktfunkSessionConfig cfg;
    punktfunk_session_config_default(&cfg);
    cfg.frame_timeout_ms = 10000;
    CHECK_STATUS(punktfunk_client_connect(addr, fp, NULL, 10000, &cfg, &client), PUNKTFUNK_OK);
    if (!client) {
        pthread_join(t, NULL);
        punktfunk_host_free(host);
        return;
    }
    CHECK_STATUS(punktfunk_client_fingerprint(client, seen, sizeof seen), PUNKTFUNK_OK);
    CHECK(strcmp(seen, fp) == 0, "client saw the pinned fingerprint");
    for (int i = 0; i < QUIC_FRAMES; i++) {
        int32_t st = PUNKTFUNK_OK;
        ev.kind = PUNKTFUNK_EVENT_NONE;
        for (int w = 0; w < 100 && st == PUNKTFUNK_OK && ev.kind == PUNKTFUNK_EVENT_NONE; w++)
            st = punktfunk_client_next_frame(client, 100, &ev);
        CHECK(st == PUNKTFUNK_OK && ev.kind == PUNKTFUNK_EVENT_FRAME, "QUIC frame %d (status %d)", i, (int)st);
        if (ev.kind != PUNKTFUNK_EVENT_FRAME) continue;
        uint8_t *want = malloc(quic_sizes[i]);
        fill(want, quic_sizes[i], 900u + (uint32_t)i);
        CHECK(ev.len == quic_sizes[i] && memcmp(ev.data, want, ev.len) == 0, "QUIC frame %d byte-exact", i);
        free(want);
    }
    PunktfunkProbeResult probe;
    CHECK_STATUS(punktfunk_client_speed_test(client, 50000, 300, &probe), PUNKTFUNK_OK);
    CHECK(probe.packets_sent > 0 && probe.packets_received > 0, "probe %llu/%llu",
          (unsigned long long)probe.packets_received, (unsigned long long)probe.packets_sent);
    CHECK_STATUS(punktfunk_client_speed_test(client, 3000001, 300, &probe), PUNKTFUNK_ERR_INVALID_ARG);

    PunktfunkInputEvent in = {.kind = PUNKTFUNK_INPUT_KEY_DOWN, .code = 44};
    CHECK_STATUS(punktfunk_client_send_input(client, &in), PUNKTFUNK_OK);
    PunktfunkInputEvent move = {.kind = PUNKTFUNK_INPUT_MOUSE_MOVE, .dx = -4, .dy = 9};
    CHECK_STATUS(punktfunk_client_send_input(client, &move), PUNKTFUNK_OK);
    PunktfunkInputEvent axis = {.kind = PUNKTFUNK_INPUT_GAMEPAD_AXIS, .axis = PUNKTFUNK_AXIS_LEFT_TRIGGER, .value = 32000};
    CHECK_STATUS(punktfunk_client_send_input(client, &axis), PUNKTFUNK_OK);
    PunktfunkInputEvent bad = {.kind = 99};
    CHECK_STATUS(punktfunk_client_send_input(client, &bad), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_send_input(client, NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_request_keyframe(client, 7), PUNKTFUNK_OK);

    /* The host closes after reading everything: the client reads its reason. */
    int32_t st = PUNKTFUNK_OK;
    for (int w = 0; w < 100 && st == PUNKTFUNK_OK; w++) st = punktfunk_client_next_frame(client, 100, &ev);
    CHECK(st == PUNKTFUNK_ERR_CLOSED, "the host's close ends the stream (status %d)", (int)st);
    uint32_t code = 99;
    char reason[64];
    CHECK_STATUS(punktfunk_client_close_reason(client, &code, reason, sizeof reason), PUNKTFUNK_OK);
    CHECK(code == PUNKTFUNK_CLOSE_NORMAL && strcmp(reason, "end of stream") == 0, "close reason %u %s", code, reason);

    struct host_result *r;
    pthread_join(t, (void **)&r);
    CHECK(r->status == PUNKTFUNK_OK, "host status %d", (int)r->status);
    CHECK(r->key_down == 1 && r->mouse_move == 1 && r->axis == 1, "inputs arrived once each (%d/%d/%d)", r->key_down,
          r->mouse_move, r->axis);
    CHECK(r->keyframe_request && r->first_lost == 7, "keyframe request");
    printf("quic: pinned connect, %d frames byte-exact, probe %.0f kbit/s, %d inputs and a keyframe request, "
           "close reason \"%s\"\n",
           QUIC_FRAMES, probe.delivered_kbps, r->inputs, reason);
    punktfunk_client_free(client);
    punktfunk_host_free(host);
    punktfunk_client_free(NULL);
    punktfunk_host_free(NULL);
    punktfunk_host_session_free(NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

struct accepted {
    PunktfunkHost *host;
    PunktfunkHostSession *session;
    int32_t status;
};

static void *accept_one(void *arg) {
    struct accepted *a = arg;
    a->status = punktfunk_host_accept(a->host, 10000, &a->session);
    return NULL;
}

/* Connects a client to `host` (pinned) and returns both ends, or 0. */
static int connect_pair(PunktfunkHost *host, const char *addr, const char *fp, PunktfunkClient **client,
                        PunktfunkHostSession **session) {
    struct accepted a = {.host = host};
    pthread_t t;
    *client = NULL;
    *session = NULL;
    if (pthread_create(&t, NULL, accept_one, &a) != 0) return 0;
    CHECK_STATUS(punktfunk_client_connect(addr, fp, NULL, 10000, NULL, client), PUNKTFUNK_OK);
    pthread_join(t, NULL);
    CHECK_STATUS(a.status, PUNKTFUNK_OK);
    *session = a.session;
    if (*client && *session) return 1;
    punktfunk_client_free(*client);
    punktfunk_host_session_free(*session);
    return 0;
}

/* Host options: rate adaptation, its target, probes switched off, bad values refused. */
static void test_quic_options(void) {
    char dir[] = "/tmp/punktfunk-c-opts-XXXXXX";
    char addr[PUNKTFUNK_ADDRESS_MAX], fp[PUNKTFUNK_FINGERPRINT_LEN];
    PunktfunkHost *host = NULL;
    PunktfunkHostOptions o;
    CHECK(mkdtemp(dir) != NULL, "temp dir");
    CHECK_STATUS(punktfunk_host_options_default(&o), PUNKTFUNK_OK);
    CHECK(o.struct_size == sizeof o && o.adaptive_rate == 1 && o.probes == 1 && o.initial_kbps == 10000 &&
              o.min_kbps == 1000 && o.max_total_kbps == 0 && o.web == 0,
          "host option defaults");
    CHECK_STATUS(punktfunk_host_options_default(NULL), PUNKTFUNK_ERR_INVALID_ARG);
    PunktfunkHostOptions bad = o;
    bad.adaptive_rate = 2;
    CHECK_STATUS(punktfunk_host_listen_with("127.0.0.1:0", dir, NULL, &bad, NULL, 0, &host), PUNKTFUNK_ERR_INVALID_ARG);
    bad = o;
    bad.min_kbps = 20000; /* above initial_kbps */
    CHECK_STATUS(punktfunk_host_listen_with("127.0.0.1:0", dir, NULL, &bad, NULL, 0, &host), PUNKTFUNK_ERR_INVALID_ARG);
    bad = o;
    bad.max_bitrate_kbps = 0;
    CHECK_STATUS(punktfunk_host_listen_with("127.0.0.1:0", dir, NULL, &bad, NULL, 0, &host), PUNKTFUNK_ERR_INVALID_ARG);
    bad = o;
    bad.struct_size = 8;
    CHECK_STATUS(punktfunk_host_listen_with("127.0.0.1:0", dir, NULL, &bad, NULL, 0, &host), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(host == NULL, "no host from refused options");

    /* Browsers: a host with web = 1 pins a certificate of its own; one without has none to give. */
    char hash[PUNKTFUNK_FINGERPRINT_LEN];
    PunktfunkHostOptions web = o;
    web.web = 2;
    CHECK_STATUS(punktfunk_host_listen_with("127.0.0.1:0", dir, NULL, &web, NULL, 0, &host), PUNKTFUNK_ERR_INVALID_ARG);
    web.web = 1;
    CHECK_STATUS(punktfunk_host_listen_with("127.0.0.1:0", dir, NULL, &web, NULL, 0, &host), PUNKTFUNK_OK);
    if (host) {
        CHECK_STATUS(punktfunk_host_web_certificate_hash(host, hash, sizeof hash), PUNKTFUNK_OK);
        CHECK_STATUS(punktfunk_host_fingerprint(host, fp, sizeof fp), PUNKTFUNK_OK);
        CHECK(strlen(hash) == 64 && strcmp(hash, fp) != 0, "browsers pin their own certificate: %s", hash);
        punktfunk_host_free(host);
        host = NULL;
    }
    /* A caller built against the first layout (no web field) is read as web = 0. */
    web = o;
    web.struct_size = 9 * sizeof(uint32_t);
    CHECK_STATUS(punktfunk_host_listen_with("127.0.0.1:0", dir, NULL, &web, NULL, 0, &host), PUNKTFUNK_OK);
    if (host) {
        CHECK_STATUS(punktfunk_host_web_certificate_hash(host, hash, sizeof hash), PUNKTFUNK_ERR_INVALID_ARG);
        punktfunk_host_free(host);
        host = NULL;
    }

    /* Fixed rate, probes off: the target is the granted bitrate; a speed test is refused at once. */
    o.max_bitrate_kbps = 40000;
    o.adaptive_rate = 0;
    o.probes = 0;
    CHECK_STATUS(punktfunk_host_listen_with("127.0.0.1:0", dir, NULL, &o, NULL, 0, &host), PUNKTFUNK_OK);
    if (!host) return;
    CHECK_STATUS(punktfunk_host_local_address(host, addr, sizeof addr), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_host_fingerprint(host, fp, sizeof fp), PUNKTFUNK_OK);
    PunktfunkClient *client = NULL;
    PunktfunkHostSession *session = NULL;
    uint32_t target = 0;
    if (connect_pair(host, addr, fp, &client, &session)) {
        CHECK_STATUS(punktfunk_host_session_target_kbps(session, &target), PUNKTFUNK_OK);
        CHECK(target == 40000, "fixed rate: target is the granted bitrate (%u)", target);
        PunktfunkProbeResult probe;
        CHECK_STATUS(punktfunk_client_speed_test(client, 10000, 200, &probe), PUNKTFUNK_OK);
        CHECK(probe.rate_kbps == 0 && probe.packets_received == 0, "probes off: refused (rate %u, %llu received)",
              probe.rate_kbps, (unsigned long long)probe.packets_received);
        punktfunk_client_free(client);
        punktfunk_host_session_free(session);
    }
    punktfunk_host_free(host);
    host = NULL;

    /* Adaptive from 2 Mbit/s: the first target is near the start, never above the ceiling. */
    CHECK_STATUS(punktfunk_host_options_default(&o), PUNKTFUNK_OK);
    o.initial_kbps = 2000;
    o.min_kbps = 500;
    o.max_bitrate_kbps = 40000;
    CHECK_STATUS(punktfunk_host_listen_with("127.0.0.1:0", dir, NULL, &o, NULL, 0, &host), PUNKTFUNK_OK);
    if (!host) return;
    CHECK_STATUS(punktfunk_host_local_address(host, addr, sizeof addr), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_host_fingerprint(host, fp, sizeof fp), PUNKTFUNK_OK);
    if (connect_pair(host, addr, fp, &client, &session)) {
        CHECK_STATUS(punktfunk_host_session_target_kbps(session, &target), PUNKTFUNK_OK);
        CHECK(target >= 500 && target <= 2500, "adaptive: the first target is near initial_kbps (%u)", target);
        PunktfunkStats st = {.struct_size = sizeof st};
        CHECK_STATUS(punktfunk_host_session_stats(session, &st), PUNKTFUNK_OK);
        CHECK(st.target_kbps == target || st.target_kbps == 0, "stats carry the target (%llu vs %u)",
              (unsigned long long)st.target_kbps, target);
        CHECK(st.rate_state == PUNKTFUNK_RATE_STATE_STARTUP || (st.rate_state == 0 && st.target_kbps == 0),
              "a new session's controller is starting up (state %llu)", (unsigned long long)st.rate_state);
        punktfunk_client_free(client);
        punktfunk_host_session_free(session);
    }
    punktfunk_host_free(host);
    printf("quic: host options: fixed rate keeps the grant, probes off refuses speed tests, adaptive starts at %u kbit/s\n",
           target);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

struct receiving {
    PunktfunkClient *client;
    int calls;
    int32_t status;
};

/* Waits for frames on a shared client handle until the session ends. */
static void *receive_until_closed(void *arg) {
    struct receiving *r = arg;
    PunktfunkFrameEvent ev;
    r->status = PUNKTFUNK_OK;
    while (r->status == PUNKTFUNK_OK && r->calls < 200) {
        r->status = punktfunk_client_next_frame(r->client, 500, &ev);
        r->calls++;
    }
    return NULL;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One thread receives on a client while another sends input, reads counters
 * and finally closes it: the control calls never wait for the receiving
 * call, and the close ends it. */
static void test_quic_client_threads(void) {
    enum { INPUTS = 200 };
    char dir[] = "/tmp/punktfunk-c-threads-XXXXXX";
    char addr[PUNKTFUNK_ADDRESS_MAX], fp[PUNKTFUNK_FINGERPRINT_LEN];
    PunktfunkHost *host = NULL;
    PunktfunkClient *client;
    PunktfunkHostSession *hs;
    CHECK(mkdtemp(dir) != NULL, "temp dir");
    CHECK_STATUS(punktfunk_host_listen("127.0.0.1:0", dir, NULL, &host), PUNKTFUNK_OK);
    if (!host) return;
    CHECK_STATUS(punktfunk_host_local_address(host, addr, sizeof addr), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_host_fingerprint(host, fp, sizeof fp), PUNKTFUNK_OK);
    if (!connect_pair(host, addr, fp, &client, &hs)) {
        punktfunk_host_free(host);
        return;
    }
    struct receiving r = {.client = client};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, receive_until_closed, &r) == 0, "receiving thread");
    /* The receiver is waiting in next_frame (the host sends nothing). */
    struct timespec settle = {0, 50 * 1000 * 1000};
    nanosleep(&settle, NULL);
    double t0 = now_ms();
    PunktfunkStats stats;
    for (int i = 0; i < INPUTS; i++) {
        PunktfunkInputEvent in = {.kind = PUNKTFUNK_INPUT_KEY_DOWN, .code = (uint32_t)i};
        CHECK_STATUS(punktfunk_client_send_input(client, &in), PUNKTFUNK_OK);
        stats.struct_size = sizeof stats;
        CHECK_STATUS(punktfunk_client_stats(client, &stats), PUNKTFUNK_OK);
    }
    CHECK_STATUS(punktfunk_client_request_keyframe(client, 3), PUNKTFUNK_OK);
    double sent_in = now_ms() - t0;
    /* Waiting for the receiving call (500 ms each) would take 100 s or more. */
    CHECK(sent_in < 10000, "%d inputs and counter reads took %.0f ms beside a waiting receiver", INPUTS, sent_in);
    int keys = 0, in_order = 1, keyframe = 0;
    PunktfunkHostEvent hev;
    for (int idle = 0; idle < 100 && (keys < INPUTS || !keyframe);) {
        if (punktfunk_host_session_next_event(hs, 100, &hev) != PUNKTFUNK_OK) break;
        if (hev.kind == PUNKTFUNK_HOST_EVENT_NONE) idle++;
        if (hev.kind == PUNKTFUNK_HOST_EVENT_INPUT && hev.input.kind == PUNKTFUNK_INPUT_KEY_DOWN) {
            in_order &= hev.input.code == (uint32_t)keys;
            keys++;
        } else if (hev.kind == PUNKTFUNK_HOST_EVENT_KEYFRAME_REQUEST) {
            keyframe = 1;
        }
    }
    CHECK(keys == INPUTS && in_order && keyframe, "host got %d/%d inputs in order (%d), keyframe request %d", keys,
          INPUTS, in_order, keyframe);
    /* A close from this thread ends the receiving call waiting on the other. */
    t0 = now_ms();
    CHECK_STATUS(punktfunk_client_close(client, PUNKTFUNK_CLOSE_NORMAL, "bye"), PUNKTFUNK_OK);
    pthread_join(t, NULL);
    CHECK(r.status == PUNKTFUNK_ERR_CLOSED, "the receiving thread ended with status %d", (int)r.status);
    CHECK(now_ms() - t0 < 5000, "the receiver saw the close within %.0f ms", now_ms() - t0);
    printf("quic: a receiving thread and an input thread share one client (%d inputs in %.1f ms)\n", INPUTS, sent_in);
    punktfunk_client_free(client);
    punktfunk_host_session_free(hs);
    punktfunk_host_free(host);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

/* Every control-plane function with NULLs, bad values and after close. */
static void test_quic_misuse(void) {
    char dir[] = "/tmp/punktfunk-c-misuse-XXXXXX";
    char path[128], addr[PUNKTFUNK_ADDRESS_MAX], fp[PUNKTFUNK_FINGERPRINT_LEN], seen[PUNKTFUNK_FINGERPRINT_LEN];
    char buf[64];
    PunktfunkHost *host;
    PunktfunkClient *client;
    PunktfunkHostSession *hs;
    PunktfunkSessionConfig cfg;
    PunktfunkStats stats;
    PunktfunkHostEvent hev;
    PunktfunkFrameEvent ev;
    PunktfunkProbeResult probe;
    PunktfunkInputEvent in;
    uint32_t code = 0;
    static uint8_t frame[1500];

    CHECK(mkdtemp(dir) != NULL, "temp dir");
    snprintf(path, sizeof path, "%s/file", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "file");
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/file/identity", dir);

    host = (PunktfunkHost *)dir;
    CHECK_STATUS(punktfunk_host_listen(NULL, dir, NULL, &host), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(host == NULL, "the handle is cleared on failure");
    CHECK_STATUS(punktfunk_host_listen("127.0.0.1:0", dir, NULL, NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_listen("\xff", dir, NULL, &host), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_listen("localhost:0", dir, NULL, &host), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_listen("127.0.0.1:0", "\xff", NULL, &host), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_listen("127.0.0.1:0", "", NULL, &host), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(strstr(punktfunk_last_error_message(), "empty") != NULL, "an empty path is not the current directory: %s",
          punktfunk_last_error_message());
    CHECK_STATUS(punktfunk_host_listen("127.0.0.1:0", path, NULL, &host), PUNKTFUNK_ERR_IO); /* below a file */
    CHECK_STATUS(punktfunk_host_listen("192.0.2.1:0", dir, NULL, &host), PUNKTFUNK_ERR_IO);
    punktfunk_session_config_default(&cfg);
    cfg.struct_size = 0;
    CHECK_STATUS(punktfunk_host_listen("127.0.0.1:0", dir, &cfg, &host), PUNKTFUNK_ERR_INVALID_ARG);
    punktfunk_session_config_default(&cfg);
    cfg.shard_payload = 1;
    CHECK_STATUS(punktfunk_host_listen("127.0.0.1:0", dir, &cfg, &host), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(host == NULL, "no host on failure");
    punktfunk_session_config_default(&cfg);
    cfg.max_frame_bytes = 1000;
    CHECK_STATUS(punktfunk_host_listen("127.0.0.1:0", dir, &cfg, &host), PUNKTFUNK_OK);
    if (!host) return;

    memset(fp, 'x', sizeof fp);
    CHECK_STATUS(punktfunk_host_fingerprint(NULL, fp, sizeof fp), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_fingerprint(host, NULL, sizeof fp), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_fingerprint(host, fp, 0), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_fingerprint(host, fp, sizeof fp - 1), PUNKTFUNK_ERR_INVALID_ARG); /* no room for NUL */
    CHECK(fp[0] == 'x', "a refused buffer is not written");
    CHECK_STATUS(punktfunk_host_fingerprint(host, fp, sizeof fp), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_host_local_address(NULL, addr, sizeof addr), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_local_address(host, NULL, sizeof addr), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_local_address(host, addr, 3), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_local_address(host, addr, sizeof addr), PUNKTFUNK_OK);
    hs = (PunktfunkHostSession *)dir;
    CHECK_STATUS(punktfunk_host_accept(NULL, 10, &hs), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_accept(host, 10, NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_accept(host, 0, &hs), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_accept(host, 10, &hs), PUNKTFUNK_ERR_TIMEOUT);
    CHECK(hs == NULL, "no session on timeout");

    client = (PunktfunkClient *)dir;
    CHECK_STATUS(punktfunk_client_connect(NULL, fp, NULL, 1000, NULL, &client), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(client == NULL, "the handle is cleared on failure");
    CHECK_STATUS(punktfunk_client_connect(addr, fp, NULL, 1000, NULL, NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_connect("nowhere", fp, NULL, 1000, NULL, &client), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_connect(addr, "abc", NULL, 1000, NULL, &client), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_connect(addr, "\xff", NULL, 1000, NULL, &client), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_connect(addr, fp, NULL, 0, NULL, &client), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_connect(addr, NULL, "", 1000, NULL, &client), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_connect(addr, NULL, "\xff", 1000, NULL, &client), PUNKTFUNK_ERR_INVALID_ARG);

    /* A live pair: every call with NULLs and bad values, then it still streams. */
    if (!connect_pair(host, addr, fp, &client, &hs)) goto out;
    CHECK_STATUS(punktfunk_host_session_submit_frame(NULL, frame, 10, 0, false), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_session_submit_frame(hs, NULL, 10, 0, false), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_session_submit_frame(hs, frame, SIZE_MAX, 0, false), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_session_submit_frame(hs, frame, 1001, 0, false), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_session_next_event(NULL, 1, &hev), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_session_next_event(hs, 1, NULL), PUNKTFUNK_ERR_INVALID_ARG);
    stats.struct_size = 0;
    CHECK_STATUS(punktfunk_host_session_stats(NULL, &stats), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_session_stats(hs, NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_session_stats(hs, &stats), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_session_close_reason(NULL, &code, buf, sizeof buf), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_session_close_reason(hs, &code, buf, sizeof buf), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_session_close(NULL, 0, "x"), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_session_close(hs, 0, "\xff"), PUNKTFUNK_ERR_INVALID_ARG); /* and stays open */

    CHECK_STATUS(punktfunk_client_fingerprint(NULL, buf, sizeof buf), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_fingerprint(client, NULL, sizeof buf), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_fingerprint(client, buf, 10), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_next_frame(NULL, 1, &ev), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_next_frame(client, 1, NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_speed_test(NULL, 100, 100, &probe), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_speed_test(client, 100, 100, NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_speed_test(client, 0, 100, &probe), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_speed_test(client, 100, 0, &probe), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_speed_test(client, 100, 5001, &probe), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_speed_test(client, UINT32_MAX, UINT32_MAX, &probe), PUNKTFUNK_ERR_INVALID_ARG);
    in = (PunktfunkInputEvent){.kind = PUNKTFUNK_INPUT_KEY_DOWN, .code = 1};
    CHECK_STATUS(punktfunk_client_send_input(NULL, &in), PUNKTFUNK_ERR_INVALID_ARG);
    const PunktfunkInputEvent bad_inputs[] = {
        {.kind = 0},
        {.kind = PUNKTFUNK_INPUT_MOUSE_MOVE_ABSOLUTE, .x = 65536},
        {.kind = PUNKTFUNK_INPUT_MOUSE_MOVE_ABSOLUTE, .y = UINT32_MAX},
        {.kind = PUNKTFUNK_INPUT_MOUSE_BUTTON, .button = 256},
        {.kind = PUNKTFUNK_INPUT_SCROLL, .dy = INT32_MIN},
        {.kind = PUNKTFUNK_INPUT_GAMEPAD_BUTTONS, .pad = 256},
        {.kind = PUNKTFUNK_INPUT_GAMEPAD_AXIS, .axis = PUNKTFUNK_AXIS_RIGHT_TRIGGER + 1},
        {.kind = PUNKTFUNK_INPUT_GAMEPAD_AXIS, .axis = PUNKTFUNK_AXIS_LEFT_X, .value = 40000},
    };
    for (size_t i = 0; i < sizeof bad_inputs / sizeof bad_inputs[0]; i++)
        CHECK_STATUS(punktfunk_client_send_input(client, &bad_inputs[i]), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_request_keyframe(NULL, 1), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_stats(NULL, &stats), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_stats(client, NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_close_reason(NULL, &code, buf, sizeof buf), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_close_reason(client, &code, buf, sizeof buf), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_close(NULL, 0, "x"), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_close(client, 0, "\xff"), PUNKTFUNK_ERR_INVALID_ARG); /* and stays open */

    /* Still working: a frame at the limit, an input edge, the largest frame index. */
    fill(frame, 1000, 11);
    CHECK_STATUS(punktfunk_host_session_submit_frame(hs, frame, 1000, 77, true), PUNKTFUNK_OK);
    int32_t st = PUNKTFUNK_OK;
    ev.kind = PUNKTFUNK_EVENT_NONE;
    for (int w = 0; w < 100 && st == PUNKTFUNK_OK && ev.kind == PUNKTFUNK_EVENT_NONE; w++)
        st = punktfunk_client_next_frame(client, 100, &ev);
    CHECK(st == PUNKTFUNK_OK && ev.kind == PUNKTFUNK_EVENT_FRAME && ev.len == 1000 && ev.pts == 77 &&
              memcmp(ev.data, frame, 1000) == 0,
          "after all that the session streams (status %d)", (int)st);
    CHECK_STATUS(punktfunk_client_send_input(client, &in), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_client_request_keyframe(client, UINT64_MAX), PUNKTFUNK_OK);

    /* The client closes; twice is fine. Later calls say CLOSED; facts stay readable. */
    CHECK_STATUS(punktfunk_client_close(client, PUNKTFUNK_CLOSE_APPLICATION, "bye"), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_client_close(client, PUNKTFUNK_CLOSE_NORMAL, "again"), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_client_next_frame(client, 10, &ev), PUNKTFUNK_ERR_CLOSED);
    CHECK_STATUS(punktfunk_client_send_input(client, &in), PUNKTFUNK_ERR_CLOSED);
    CHECK_STATUS(punktfunk_client_request_keyframe(client, 1), PUNKTFUNK_ERR_CLOSED);
    CHECK_STATUS(punktfunk_client_speed_test(client, 100, 100, &probe), PUNKTFUNK_ERR_CLOSED);
    stats.struct_size = sizeof stats;
    CHECK_STATUS(punktfunk_client_stats(client, &stats), PUNKTFUNK_OK);
    CHECK(stats.frames_completed == 1, "final counters: %llu frames", (unsigned long long)stats.frames_completed);
    CHECK_STATUS(punktfunk_client_fingerprint(client, seen, sizeof seen), PUNKTFUNK_OK);
    CHECK(strcmp(seen, fp) == 0, "the fingerprint stays readable");
    CHECK_STATUS(punktfunk_client_close_reason(client, NULL, buf, sizeof buf), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_close_reason(client, &code, NULL, sizeof buf), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_close_reason(client, &code, buf, 3), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_close_reason(client, &code, buf, sizeof buf), PUNKTFUNK_OK);
    CHECK(code == PUNKTFUNK_CLOSE_APPLICATION && strcmp(buf, "bye") == 0, "the first close counts: %u %s", code, buf);

    /* The host side hears it: the CLOSED event, then ERR_CLOSED. */
    int closed = 0;
    st = PUNKTFUNK_OK;
    for (int w = 0; w < 100 && st == PUNKTFUNK_OK; w++) {
        st = punktfunk_host_session_next_event(hs, 100, &hev);
        closed += st == PUNKTFUNK_OK && hev.kind == PUNKTFUNK_HOST_EVENT_CLOSED &&
                  hev.close_code == PUNKTFUNK_CLOSE_APPLICATION;
    }
    CHECK(closed == 1 && st == PUNKTFUNK_ERR_CLOSED, "one CLOSED event, then ERR_CLOSED (%d, %d)", closed, (int)st);
    CHECK_STATUS(punktfunk_host_session_submit_frame(hs, frame, 10, 0, false), PUNKTFUNK_ERR_CLOSED);
    CHECK_STATUS(punktfunk_host_session_close_reason(hs, &code, buf, sizeof buf), PUNKTFUNK_OK);
    CHECK(code == PUNKTFUNK_CLOSE_APPLICATION && strcmp(buf, "bye") == 0, "host reads %u %s", code, buf);
    CHECK_STATUS(punktfunk_host_session_close(hs, PUNKTFUNK_CLOSE_NORMAL, NULL), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_host_session_close(hs, PUNKTFUNK_CLOSE_NORMAL, "twice"), PUNKTFUNK_OK);
    stats.struct_size = sizeof stats;
    CHECK_STATUS(punktfunk_host_session_stats(hs, &stats), PUNKTFUNK_OK);
    CHECK(stats.frames_submitted == 1, "host counters: %llu frames", (unsigned long long)stats.frames_submitted);
    punktfunk_client_free(client);
    punktfunk_host_session_free(hs);

    /* Freeing the host ends its live sessions; the port is free again. */
    if (!connect_pair(host, addr, fp, &client, &hs)) goto out;
    punktfunk_host_free(host);
    host = NULL;
    CHECK_STATUS(punktfunk_host_session_submit_frame(hs, frame, 10, 0, false), PUNKTFUNK_ERR_CLOSED);
    st = PUNKTFUNK_OK;
    for (int w = 0; w < 100 && st == PUNKTFUNK_OK; w++) st = punktfunk_client_next_frame(client, 100, &ev);
    CHECK(st == PUNKTFUNK_ERR_CLOSED, "the client hears the host go (status %d)", (int)st);
    CHECK_STATUS(punktfunk_client_close_reason(client, &code, buf, sizeof buf), PUNKTFUNK_OK);
    CHECK(code == PUNKTFUNK_CLOSE_HOST_SHUTDOWN, "code %u (%s)", code, buf);
    punktfunk_host_session_free(hs);
    punktfunk_client_free(client);
    CHECK_STATUS(punktfunk_host_listen(addr, dir, NULL, &host), PUNKTFUNK_OK);

out:
    punktfunk_host_free(host);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

/* The host thread of test_quic_authorized: accepts until a client is
 * admitted, noting each refusal and what the host said about it. */
struct admission {
    PunktfunkHost *host;
    PunktfunkHostSession *session;
    int refused, other;
    char why[2][256];
};

static void *admit_one(void *arg) {
    struct admission *a = arg;
    for (int tries = 0; tries < 5 && a->session == NULL; tries++) {
        int32_t st = punktfunk_host_accept(a->host, 10000, &a->session);
        if (st == PUNKTFUNK_ERR_UNAUTHORIZED) {
            if (a->refused < 2) snprintf(a->why[a->refused], sizeof a->why[0], "%s", punktfunk_last_error_message());
            a->refused++;
        } else if (st != PUNKTFUNK_OK) {
            a->other++;
        }
    }
    if (a->session)
        punktfunk_host_session_submit_frame(a->session, (const uint8_t *)"welcome", 7, 1, true);
    return NULL;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Client identities and a host that admits only a listed one. */
static void test_quic_authorized(void) {
    char dir[] = "/tmp/punktfunk-c-authz-XXXXXX";
    char good[96], bad[96], file[96], below_file[128], addr[PUNKTFUNK_ADDRESS_MAX];
    char fp_good[PUNKTFUNK_FINGERPRINT_LEN], fp_bad[PUNKTFUNK_FINGERPRINT_LEN], fp_host[PUNKTFUNK_FINGERPRINT_LEN];
    char seen[PUNKTFUNK_FINGERPRINT_LEN], colons[96];
    PunktfunkHost *host = NULL;
    PunktfunkClient *client = NULL;
    PunktfunkHostSession *hs = NULL;
    PunktfunkFrameEvent ev;
    pthread_t t;

    CHECK(mkdtemp(dir) != NULL, "temp dir");
    snprintf(good, sizeof good, "%s/good", dir);
    snprintf(bad, sizeof bad, "%s/bad", dir);
    snprintf(file, sizeof file, "%s/file", dir);
    snprintf(below_file, sizeof below_file, "%s/identity", file);
    FILE *f = fopen(file, "w");
    CHECK(f != NULL, "file");
    if (f) fclose(f);

    /* A client identity: created on first use, then the same every time. */
    memset(fp_good, 'x', sizeof fp_good);
    CHECK_STATUS(punktfunk_identity_fingerprint(good, NULL, sizeof fp_good), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_identity_fingerprint(good, fp_good, 0), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_identity_fingerprint(good, fp_good, sizeof fp_good - 1), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(fp_good[0] == 'x' && !exists(good), "a refused call neither writes nor creates anything");
    CHECK_STATUS(punktfunk_identity_fingerprint("", fp_good, sizeof fp_good), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_identity_fingerprint("\xff", fp_good, sizeof fp_good), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_identity_fingerprint(below_file, fp_good, sizeof fp_good), PUNKTFUNK_ERR_IO);
    CHECK_STATUS(punktfunk_identity_fingerprint(good, fp_good, sizeof fp_good), PUNKTFUNK_OK);
    CHECK(strlen(fp_good) == 64 && exists(good), "identity created: %s", fp_good);
    CHECK_STATUS(punktfunk_identity_fingerprint(good, seen, sizeof seen), PUNKTFUNK_OK);
    CHECK(strcmp(seen, fp_good) == 0, "the identity is loaded, not made anew");
    /* The same kind of identity a host has: a host on it shows that fingerprint. */
    CHECK_STATUS(punktfunk_host_listen("127.0.0.1:0", good, NULL, &host), PUNKTFUNK_OK);
    if (!host) goto out;
    CHECK_STATUS(punktfunk_host_fingerprint(host, fp_host, sizeof fp_host), PUNKTFUNK_OK);
    CHECK(strcmp(fp_host, fp_good) == 0, "host on the client identity: %s vs %s", fp_host, fp_good);

    /* An open host admits both kinds of client and says who presented what. */
    CHECK_STATUS(punktfunk_host_local_address(host, addr, sizeof addr), PUNKTFUNK_OK);
    if (connect_pair(host, addr, fp_host, &client, &hs)) {
        CHECK_STATUS(punktfunk_host_session_client_fingerprint(hs, seen, sizeof seen), PUNKTFUNK_ERR_INVALID_ARG);
        CHECK(strstr(punktfunk_last_error_message(), "no identity") != NULL, "anonymous: %s",
              punktfunk_last_error_message());
        punktfunk_client_free(client);
        punktfunk_host_session_free(hs);
    }
    struct accepted acc = {.host = host};
    CHECK(pthread_create(&t, NULL, accept_one, &acc) == 0, "accept thread");
    CHECK_STATUS(punktfunk_client_connect_as(addr, fp_host, NULL, bad, 10000, NULL, &client), PUNKTFUNK_OK);
    pthread_join(t, NULL);
    CHECK_STATUS(acc.status, PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_identity_fingerprint(bad, fp_bad, sizeof fp_bad), PUNKTFUNK_OK); /* made by connect_as */
    CHECK(strcmp(fp_bad, fp_good) != 0, "two identities, two fingerprints");
    if (acc.session) {
        CHECK_STATUS(punktfunk_host_session_client_fingerprint(acc.session, seen, sizeof seen), PUNKTFUNK_OK);
        CHECK(strcmp(seen, fp_bad) == 0, "an open host reports the presented identity: %s", seen);
    }
    punktfunk_client_free(client);
    punktfunk_host_session_free(acc.session);
    client = NULL;
    punktfunk_host_free(host);
    host = NULL;

    /* Bad lists: each refused with the entry named, and no handle. */
    for (int i = 0; i < 32; i++) snprintf(colons + 3 * i, 4, "%.2s%s", fp_good + 2 * i, i < 31 ? ":" : "");
    const char *list[] = {colons};
    const char *with_null[] = {colons, NULL};
    const char *with_empty[] = {""};
    const char *short_one[] = {fp_good, "abc"};
    const char *not_hex[] = {"zz00000000000000000000000000000000000000000000000000000000000000"};
    const char *not_utf8[] = {"\xff"};
    char too_long[70];
    snprintf(too_long, sizeof too_long, "%s0", fp_good);
    const char *long_one[] = {too_long};
    struct {
        const char *const *list;
        size_t len;
        const char *why;
    } refused[] = {
        {NULL, 0, "punktfunk_host_listen"}, /* "anyone" has its own function */
        {list, 0, "no client"},
        {NULL, 1, "authorized is NULL"},
        {with_null, 2, "authorized[1] is NULL"},
        {with_empty, 1, "authorized[0] is empty"},
        {short_one, 2, "authorized[1]"},
        {not_hex, 1, "hexadecimal"},
        {not_utf8, 1, "UTF-8"},
        {long_one, 1, "64 hex digits"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        host = (PunktfunkHost *)dir;
        CHECK_STATUS(punktfunk_host_listen_authorized("127.0.0.1:0", dir, NULL, refused[i].list, refused[i].len, &host),
                     PUNKTFUNK_ERR_INVALID_ARG);
        CHECK(host == NULL, "list %zu: the handle is cleared", i);
        CHECK(strstr(punktfunk_last_error_message(), refused[i].why) != NULL, "list %zu: %s", i,
              punktfunk_last_error_message());
    }
    CHECK_STATUS(punktfunk_host_listen_authorized("127.0.0.1:0", dir, NULL, list, 1, NULL), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_listen_authorized(NULL, dir, NULL, list, 1, &host), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_listen_authorized("127.0.0.1:0", "", NULL, list, 1, &host), PUNKTFUNK_ERR_INVALID_ARG);

    /* Bad arguments to connect_as: refused before any network traffic. */
    client = (PunktfunkClient *)dir;
    CHECK_STATUS(punktfunk_client_connect_as("127.0.0.1:9", fp_good, NULL, NULL, 1000, NULL, &client),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(client == NULL, "the handle is cleared on failure");
    CHECK(strstr(punktfunk_last_error_message(), "punktfunk_client_connect") != NULL, "says what to use: %s",
          punktfunk_last_error_message());
    CHECK_STATUS(punktfunk_client_connect_as("127.0.0.1:9", fp_good, NULL, "", 1000, NULL, &client),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_connect_as("127.0.0.1:9", fp_good, NULL, "\xff", 1000, NULL, &client),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_connect_as(NULL, fp_good, NULL, good, 1000, NULL, &client), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_connect_as("127.0.0.1:9", fp_good, NULL, good, 1000, NULL, NULL),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_connect_as("127.0.0.1:9", "abc", NULL, good, 1000, NULL, &client),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_connect_as("127.0.0.1:9", fp_good, NULL, good, 0, NULL, &client),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_client_connect_as("127.0.0.1:9", fp_good, NULL, below_file, 1000, NULL, &client),
                 PUNKTFUNK_ERR_IO);
    CHECK_STATUS(punktfunk_host_session_client_fingerprint(NULL, seen, sizeof seen), PUNKTFUNK_ERR_INVALID_ARG);

    /* A host that admits only the good identity (listed with colons). */
    CHECK_STATUS(punktfunk_host_listen_authorized("127.0.0.1:0", dir, NULL, list, 1, &host), PUNKTFUNK_OK);
    if (!host) goto out;
    CHECK_STATUS(punktfunk_host_local_address(host, addr, sizeof addr), PUNKTFUNK_OK);
    CHECK_STATUS(punktfunk_host_fingerprint(host, fp_host, sizeof fp_host), PUNKTFUNK_OK);
    struct admission adm = {.host = host};
    CHECK(pthread_create(&t, NULL, admit_one, &adm) == 0, "host thread");

    /* Anonymous, then a stranger: refused, and told why. */
    CHECK_STATUS(punktfunk_client_connect(addr, fp_host, NULL, 10000, NULL, &client), PUNKTFUNK_ERR_UNAUTHORIZED);
    CHECK(client == NULL, "no handle for a refused client");
    CHECK(strstr(punktfunk_last_error_message(), "ERR_PF_UNAUTHORIZED") != NULL &&
              strstr(punktfunk_last_error_message(), "presented no identity") != NULL,
          "anonymous hears why: %s", punktfunk_last_error_message());
    CHECK_STATUS(punktfunk_client_connect_as(addr, fp_host, NULL, bad, 10000, NULL, &client),
                 PUNKTFUNK_ERR_UNAUTHORIZED);
    CHECK(client == NULL, "no handle for a refused client");
    CHECK(strstr(punktfunk_last_error_message(), "not authorized") != NULL &&
              strstr(punktfunk_last_error_message(), fp_bad) != NULL,
          "the stranger hears why: %s", punktfunk_last_error_message());

    /* The listed client: admitted, streams, and is known by its fingerprint. */
    PunktfunkSessionConfig cfg;
    punktfunk_session_config_default(&cfg);
    cfg.frame_timeout_ms = 10000;
    CHECK_STATUS(punktfunk_client_connect_as(addr, fp_host, NULL, good, 10000, &cfg, &client), PUNKTFUNK_OK);
    pthread_join(t, NULL);
    CHECK(adm.refused == 2 && adm.other == 0, "the host refused %d and failed %d otherwise", adm.refused, adm.other);
    CHECK(strstr(adm.why[0], "ERR_PF_UNAUTHORIZED") != NULL && strstr(adm.why[0], "presented no identity") != NULL,
          "host on the anonymous client: %s", adm.why[0]);
    CHECK(strstr(adm.why[1], "not authorized") != NULL && strstr(adm.why[1], fp_bad) != NULL,
          "host on the stranger: %s", adm.why[1]);
    if (!client || !adm.session) {
        punktfunk_client_free(client);
        punktfunk_host_session_free(adm.session);
        goto out;
    }
    int32_t st = PUNKTFUNK_OK;
    ev.kind = PUNKTFUNK_EVENT_NONE;
    for (int w = 0; w < 100 && st == PUNKTFUNK_OK && ev.kind == PUNKTFUNK_EVENT_NONE; w++)
        st = punktfunk_client_next_frame(client, 100, &ev);
    CHECK(st == PUNKTFUNK_OK && ev.kind == PUNKTFUNK_EVENT_FRAME && ev.len == 7 && memcmp(ev.data, "welcome", 7) == 0,
          "the admitted client gets its frame (status %d)", (int)st);
    memset(seen, 'x', sizeof seen);
    CHECK_STATUS(punktfunk_host_session_client_fingerprint(adm.session, NULL, sizeof seen), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_session_client_fingerprint(adm.session, seen, 0), PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_host_session_client_fingerprint(adm.session, seen, sizeof seen - 1),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(seen[0] == 'x', "a refused buffer is not written");
    CHECK_STATUS(punktfunk_host_session_client_fingerprint(adm.session, seen, sizeof seen), PUNKTFUNK_OK);
    CHECK(strcmp(seen, fp_good) == 0, "the host knows whom it admitted: %s", seen);
    printf("quic: a host admitting one client identity refused an anonymous client and a stranger, admitted %.16s...\n",
           seen);
    punktfunk_client_close(client, PUNKTFUNK_CLOSE_NORMAL, "bye");
    punktfunk_client_free(client);
    punktfunk_host_session_free(adm.session);

out:
    punktfunk_host_free(host);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}
#endif

int main(void) {
    test_abi_and_errors();
    test_null_and_bad_arguments();
    test_lengths_sizes_and_ranges();
    test_loopback_with_loss();
    test_udp();
    test_panic_is_contained();
#if defined(PUNKTFUNK_FEATURE_QUIC)
    test_quic();
    test_quic_misuse();
    test_quic_options();
    test_quic_client_threads();
    test_quic_authorized();
#endif
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all C ABI checks passed\n");
    return 0;
}
