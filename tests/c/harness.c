/*
 * C test harness for include/punktfunk_core.h, linked against the static
 * library. Built with -std=c11 -Wall -Wextra -Werror and run by `npm test`,
 * directly and under valgrind memcheck (scripts/test-c.sh).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "punktfunk_core.h"

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
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, NULL, NULL, secret, 32, NULL, 0, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", NULL, NULL, 32, NULL, 0, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", NULL, secret, 32, NULL, 0, NULL, NULL),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_new_udp(7, "127.0.0.1:0", NULL, secret, 32, NULL, 0, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", NULL, secret, 8, NULL, 0, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG); /* secret too short */
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "\xff\xfe:0", NULL, secret, 32, NULL, 0, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG); /* not UTF-8 */
    CHECK(strstr(punktfunk_last_error_message(), "UTF-8") != NULL, "UTF-8 named: %s", punktfunk_last_error_message());
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "localhost", NULL, secret, 32, NULL, 0, NULL, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
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
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", NULL, secret, sizeof secret, NULL, 0,
                                           &cfg, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
    CHECK(s == NULL, "no session for a bad udp_offload");
    cfg.udp_offload = PUNKTFUNK_OFFLOAD_AUTO;
    cfg.pacing = 2;
    CHECK_STATUS(punktfunk_session_new_udp(PUNKTFUNK_ROLE_HOST, "127.0.0.1:0", NULL, secret, sizeof secret, NULL, 0,
                                           &cfg, &s),
                 PUNKTFUNK_ERR_INVALID_ARG);
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
    for (int waited = 0; waited < 100 && (r.inputs < 3 || !r.keyframe_request); waited++) {
        if (punktfunk_host_session_next_event(s, 100, &ev) != PUNKTFUNK_OK) break;
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
    CHECK_STATUS(punktfunk_host_listen("127.0.0.1:0", dir, NULL, &host), PUNKTFUNK_OK);
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
#endif

int main(void) {
    test_abi_and_errors();
    test_null_and_bad_arguments();
    test_loopback_with_loss();
    test_udp();
    test_panic_is_contained();
#if defined(PUNKTFUNK_FEATURE_QUIC)
    test_quic();
#endif
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all C ABI checks passed\n");
    return 0;
}
