/*
 * reader: a load client in C for roomcast's benchmarks (benchmarks/run.py, the
 * "-reader" scenarios): many WebSocket subscribers and one publisher in one process.
 *
 * Why: on a 2-core machine the load client has one core, and `roomcast bench`
 * (Python) spends about 16 us of it per frame it reads one at a time, and more per
 * publish. At window 16 and at half of roomcast's peak that core is saturated: the
 * deliveries/s are then the client's, and so is much of the p99 (a read that takes
 * several frames stamps them all with the last one's arrival). This program does the
 * same work in C (epoll, one recvmsg per readable socket), so the figures are the
 * server's for as long as its own core is not saturated; it says how busy it was.
 *
 * What it does:
 *   1. opens --subscribers WebSocket connections to --url (ws://host:port/path, no
 *      TLS), one after another: the opening handshake (101 and Sec-WebSocket-Accept
 *      checked), then, with --protocol roomcast (the default), a `connect` and a
 *      `subscribe` to --room: a connection is ready at its subscribe reply, whose
 *      offset is its base. With --sse yes (roomcast) a subscriber is a Server-Sent
 *      Events stream instead, GET <prefix>/rooms/ROOM/events beside the WebSocket
 *      endpoint <prefix>/ws, ready at its `subscribed` event (the publisher stays a
 *      WebSocket). With --protocol broadcast (a relaying server, offsets numbered by
 *      the publisher from 1) it is ready once a barrier frame the publisher sends
 *      comes through it;
 *   2. opens the publisher's connection (roomcast: `connect`), prints "ready N";
 *   3. publishes to --room at --rate publishes/s (0: as fast as --window allows) with
 *      at most --window unacknowledged, for --warmup then --duration seconds, the data
 *      shaped as roomcast bench's ({"bench_t":<send time>,"seq":n,"pad":"xx.."},
 *      about --payload-bytes); an acknowledgement is roomcast's publish reply, or the
 *      publisher's own frame coming back from a relaying server;
 *   4. meanwhile reads every socket (SO_TIMESTAMPNS: the kernel's stamp of when the
 *      bytes reached the socket, CLOCK_REALTIME, the clock of the send time); for
 *      every message event it keeps (send time, arrival) and checks the offset (the
 *      next expected, a gap, or a regression: a duplicate or a late one); answers
 *      pings, counts closes;
 *   5. after the window, waits up to --grace seconds for the last acknowledgements and
 *      deliveries, then prints one JSON line: what was published and acknowledged,
 *      the deliveries that arrived in the measured window, the latency percentiles
 *      (ms) of the events sent in it, lost (gaps, and offsets up to the highest
 *      acknowledged one that never came) and regressions, closes, its own CPU share
 *      and, with --server-pid, the server's (from /proc) over the window.
 *
 * Build: cc -O2 -o reader reader.c (benchmarks/compiled_reader.py does it).
 * Exit codes: 0 done, 2 bad arguments, 3 a connection could not be set up.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define READ_MIN 65536
#define MAX_FRAME (16 << 20)
#define SETUP_TIMEOUT_MS 10000

struct conn {
    int fd;
    unsigned char *buf;
    size_t len, cap;
    long long base, expect, count;
    int closed, synced, publisher;
    int sse, chunked;   /* an SSE subscriber: its body, de-chunked, goes to events */
    unsigned char *events;
    size_t events_len, events_cap;
};

struct record {
    double sent, arrival;
};

static volatile sig_atomic_t stopping = 0;
static struct record *records;
static size_t n_records, cap_records;
static long long gaps, regressions, other_frames, closes, errors, max_frame_seen;
/* the publisher */
static int relaying;
static long long sent, acked, refused, max_acked = -1;

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

static void die(int code, const char *what, const char *detail) {
    fprintf(stderr, "reader: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(code);
}

/* --- base64 and SHA-1, for Sec-WebSocket-Accept --------------------------------- */

static void base64(const unsigned char *in, size_t n, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = t[v >> 18 & 63], out[o++] = t[v >> 12 & 63];
        out[o++] = t[v >> 6 & 63], out[o++] = t[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = t[v >> 18 & 63], out[o++] = t[v >> 12 & 63], out[o++] = '=', out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = t[v >> 18 & 63], out[o++] = t[v >> 12 & 63];
        out[o++] = t[v >> 6 & 63], out[o++] = '=';
    }
    out[o] = 0;
}

static uint32_t rol(uint32_t x, int k) { return x << k | x >> (32 - k); }

static void sha1(const unsigned char *msg, size_t n, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((n + 8) / 64 + 1) * 64;
    unsigned char *m = calloc(total, 1);
    if (!m) die(3, "out of memory", NULL);
    memcpy(m, msg, n);
    m[n] = 0x80;
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++) m[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t c = 0; c < total; c += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)m[c + 4 * i] << 24 | (uint32_t)m[c + 4 * i + 1] << 16 |
                   (uint32_t)m[c + 4 * i + 2] << 8 | m[c + 4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], cc = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) f = (b & cc) | (~b & d), k = 0x5A827999;
            else if (i < 40) f = b ^ cc ^ d, k = 0x6ED9EBA1;
            else if (i < 60) f = (b & cc) | (b & d) | (cc & d), k = 0x8F1BBCDC;
            else f = b ^ cc ^ d, k = 0xCA62C1D6;
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d, d = cc, cc = rol(b, 30), b = a, a = t;
        }
        h[0] += a, h[1] += b, h[2] += cc, h[3] += d, h[4] += e;
    }
    free(m);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}

/* --- sending ---------------------------------------------------------------------- */

static void send_all(int fd, const unsigned char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                usleep(1000);
                continue;
            }
            errors++;
            return;
        }
        p += k, n -= (size_t)k;
    }
}

/* One masked client frame (RFC 6455: a client masks every frame). */
static void send_frame(int fd, int opcode, const unsigned char *payload, size_t n) {
    unsigned char head[14], key[4];
    size_t h = 0;
    unsigned char *out = malloc(n + 14);
    if (!out) die(3, "out of memory", NULL);
    for (int i = 0; i < 4; i++) key[i] = (unsigned char)(rand() & 0xFF);
    head[h++] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        head[h++] = (unsigned char)(0x80 | n);
    } else if (n < 65536) {
        head[h++] = 0x80 | 126, head[h++] = (unsigned char)(n >> 8), head[h++] = (unsigned char)n;
    } else {
        head[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) head[h++] = (unsigned char)((uint64_t)n >> (8 * i));
    }
    memcpy(head + h, key, 4);
    h += 4;
    memcpy(out, head, h);
    for (size_t i = 0; i < n; i++) out[h + i] = payload[i] ^ key[i & 3];
    send_all(fd, out, h + n);
    free(out);
}

/* --- reading ---------------------------------------------------------------------- */

static void reserve(struct conn *c, size_t room) {
    if (c->cap - c->len >= room) return;
    size_t cap = c->cap ? c->cap : READ_MIN;
    while (cap - c->len < room) cap *= 2;
    unsigned char *b = realloc(c->buf, cap);
    if (!b) die(3, "out of memory", NULL);
    c->buf = b, c->cap = cap;
}

static const unsigned char *find(const unsigned char *hay, size_t n, const char *needle) {
    return memmem(hay, n, needle, strlen(needle));
}

/* The integer after `key` in `p`, or -1. */
static long long number_after(const unsigned char *p, size_t n, const char *key) {
    const unsigned char *at = find(p, n, key);
    if (!at) return -1;
    at += strlen(key);
    long long v = 0;
    int digits = 0;
    while (at < p + n && *at >= '0' && *at <= '9') v = v * 10 + (*at++ - '0'), digits++;
    return digits ? v : -1;
}

static double decimal_after(const unsigned char *p, size_t n, const char *key) {
    const unsigned char *at = find(p, n, key);
    if (!at) return 0.0;
    at += strlen(key);
    char tmp[40];
    size_t k = 0;
    while (at < p + n && k < sizeof tmp - 1 && ((*at >= '0' && *at <= '9') || *at == '.'))
        tmp[k++] = (char)*at++;
    tmp[k] = 0;
    return k ? strtod(tmp, NULL) : 0.0;
}

static void keep(double sent, double arrival) {
    if (n_records == cap_records) {
        cap_records = cap_records ? cap_records * 2 : 1 << 20;
        records = realloc(records, cap_records * sizeof *records);
        if (!records) die(3, "out of memory", NULL);
    }
    records[n_records].sent = sent;
    records[n_records].arrival = arrival;
    n_records++;
}

static void acknowledged(long long offset) {
    acked++;
    if (offset > max_acked) max_acked = offset;
}

/* A frame on the publisher's connection: a publish reply (roomcast), or its own frame
 * back from a relaying server; anything else is ignored. */
static void on_publisher_text(const unsigned char *p, size_t n) {
    static const char reply[] = "{\"id\":", event[] = "{\"type\":\"message\"";
    if (!relaying && n >= sizeof reply - 1 && memcmp(p, reply, sizeof reply - 1) == 0) {
        if (find(p, n, "\"ok\":true")) {
            acknowledged(number_after(p, n, "\"offset\":"));
        } else {
            if (!refused) fprintf(stderr, "reader: publish refused: %.*s\n", (int)(n < 300 ? n : 300), p);
            refused++;
        }
    } else if (relaying && n >= sizeof event - 1 && memcmp(p, event, sizeof event - 1) == 0) {
        long long offset = number_after(p, n, "\"offset\":");
        if (offset > max_acked && offset <= sent) acknowledged(offset); /* once each */
    }
}

static void on_text(struct conn *c, const unsigned char *p, size_t n, double arrival) {
    static const char event[] = "{\"type\":\"message\"";
    if (c->publisher) {
        on_publisher_text(p, n);
        return;
    }
    if (n < sizeof event - 1 || memcmp(p, event, sizeof event - 1) != 0) {
        if (find(p, n, "\"type\":\"sync\"")) c->synced = 1;
        else other_frames++;
        return;
    }
    long long offset = number_after(p, n, "\"offset\":");
    if (offset < 0) {
        errors++;
        return;
    }
    c->count++;
    if (offset == c->expect) {
        c->expect = offset + 1;
    } else if (offset > c->expect) {
        gaps += offset - c->expect;
        c->expect = offset + 1;
    } else {
        regressions++;
    }
    double sent = decimal_after(p, n, "\"bench_t\":");
    if (sent > 0) keep(sent, arrival);
}

/*
 * Every complete frame in c's buffer: text frames to on_text (or, before the
 * connection is ready, the reply to `want_id`, whose "offset" is returned through
 * *reply_offset), pings answered. Returns 1 when the wanted reply came, -1 on a
 * protocol error or a close, else 0.
 */
static int parse_ws(struct conn *c, double arrival, int want_id, long long *reply_offset) {
    size_t pos = 0;
    int result = 0;
    while (c->len - pos >= 2) {
        unsigned char *f = c->buf + pos;
        size_t avail = c->len - pos, head = 2;
        uint64_t n = f[1] & 0x7F;
        if (f[1] & 0x80) {
            errors++;
            return -1; /* a masked frame from a server */
        }
        if (n == 126) {
            if (avail < 4) break;
            n = (uint64_t)f[2] << 8 | f[3], head = 4;
        } else if (n == 127) {
            if (avail < 10) break;
            n = 0;
            for (int i = 0; i < 8; i++) n = n << 8 | f[2 + i];
            head = 10;
        }
        if (n > MAX_FRAME) {
            errors++;
            return -1;
        }
        if (avail < head + n) break;
        if ((long long)n > max_frame_seen) max_frame_seen = (long long)n;
        int opcode = f[0] & 0x0F;
        unsigned char *p = f + head;
        if (!(f[0] & 0x80)) {
            errors++; /* roomcast never fragments; not expected here */
        } else if (opcode == 1 || opcode == 2) {
            if (want_id >= 0) {
                char id[32];
                snprintf(id, sizeof id, "{\"id\":%d,", want_id);
                if (n >= strlen(id) && memcmp(p, id, strlen(id)) == 0) {
                    if (!find(p, (size_t)n, "\"ok\":true")) {
                        fprintf(stderr, "reader: refused: %.*s\n", (int)(n < 300 ? n : 300), p);
                        return -1;
                    }
                    if (reply_offset) *reply_offset = number_after(p, (size_t)n, "\"offset\":");
                    result = 1;
                    want_id = -1;
                } else {
                    other_frames++;
                }
            } else {
                on_text(c, p, (size_t)n, arrival);
            }
        } else if (opcode == 9) {
            send_frame(c->fd, 10, p, (size_t)n);
        } else if (opcode == 8) {
            closes++;
            c->closed = 1;
            return -1;
        }
        pos += head + (size_t)n;
    }
    if (pos) {
        memmove(c->buf, c->buf + pos, c->len - pos);
        c->len -= pos;
    }
    return result;
}

/* SSE: c's body (de-chunked when chunked) appended to c->events. Returns -1 at the end
 * of the body or on a malformed chunk, else 0. */
static int dechunk(struct conn *c) {
    size_t pos = 0;
    int result = 0;
    while (pos < c->len) {
        size_t take;
        if (!c->chunked) {
            take = c->len - pos;
        } else {
            unsigned char *line = c->buf + pos, *crlf = (unsigned char *)find(line, c->len - pos, "\r\n");
            if (!crlf) break;
            char *end;
            unsigned long size = strtoul((const char *)line, &end, 16);
            if ((unsigned char *)end == line || size > MAX_FRAME) {
                errors++;
                return -1;
            }
            size_t head = (size_t)(crlf - line) + 2;
            if (size == 0) {
                result = -1; /* the last chunk: the server ended the stream */
                pos = c->len;
                break;
            }
            if (c->len - pos < head + size + 2) break;
            if (memcmp(line + head + size, "\r\n", 2) != 0) { /* a chunk of another size */
                errors++;
                return -1;
            }
            pos += head;
            take = size;
        }
        if (c->events_cap - c->events_len < take) {
            size_t cap = c->events_cap ? c->events_cap : READ_MIN;
            while (cap - c->events_len < take) cap *= 2;
            unsigned char *e = realloc(c->events, cap);
            if (!e) die(3, "out of memory", NULL);
            c->events = e, c->events_cap = cap;
        }
        memcpy(c->events + c->events_len, c->buf + pos, take);
        c->events_len += take;
        pos += take + (c->chunked ? 2 : 0);
    }
    memmove(c->buf, c->buf + pos, c->len - pos);
    c->len -= pos;
    return result;
}

/* The value of field `name` ("data: ") in one SSE event [p, p + n), its length in *len. */
static const unsigned char *field(const unsigned char *p, size_t n, const char *name, size_t *len) {
    size_t k = strlen(name);
    for (size_t at = 0; at + k <= n;) {
        const unsigned char *nl = memchr(p + at, '\n', n - at);
        size_t line = nl ? (size_t)(nl - (p + at)) : n - at;
        if (line >= k && memcmp(p + at, name, k) == 0) {
            *len = line - k;
            return p + at + k;
        }
        at += line + 1;
    }
    return NULL;
}

/* Every complete event of an SSE subscriber: `message` to on_text; with want_id >= 0
 * the `subscribed` event, whose offset is returned through *reply_offset (1); `close`
 * ends it (-1). roomcast ends each event with a blank line ("\n\n"). */
static int parse_sse(struct conn *c, double arrival, int want_id, long long *reply_offset) {
    int ended = dechunk(c), result = 0;
    size_t pos = 0;
    while (pos < c->events_len) {
        const unsigned char *p = c->events + pos;
        const unsigned char *end = find(p, c->events_len - pos, "\n\n");
        if (!end) break;
        size_t n = (size_t)(end - p) + 1, kind_len = 0, data_len = 0;
        const unsigned char *kind = field(p, n, "event: ", &kind_len);
        const unsigned char *data = field(p, n, "data: ", &data_len);
        pos += n + 1;
        if (kind && kind_len == 7 && !memcmp(kind, "message", 7) && data) {
            on_text(c, data, data_len, arrival);
        } else if (kind && kind_len == 10 && !memcmp(kind, "subscribed", 10) && data &&
                   want_id >= 0) {
            if (reply_offset) *reply_offset = number_after(data, data_len, "\"offset\":");
            result = 1;
            want_id = -1;
        } else if (kind && kind_len == 5 && !memcmp(kind, "close", 5)) {
            closes++;
            c->closed = 1;
            ended = -1;
            break;
        } else {
            other_frames++;
        }
    }
    memmove(c->events, c->events + pos, c->events_len - pos);
    c->events_len -= pos;
    return ended < 0 ? -1 : result;
}

static int parse(struct conn *c, double arrival, int want_id, long long *reply_offset) {
    if (c->sse) return parse_sse(c, arrival, want_id, reply_offset);
    return parse_ws(c, arrival, want_id, reply_offset);
}

/* One read; the arrival stamp of its last segment in *arrival. 0 at EOF, -1 EAGAIN. */
static ssize_t read_stamped(struct conn *c, double *arrival) {
    reserve(c, READ_MIN);
    struct iovec iov = {c->buf + c->len, c->cap - c->len};
    union {
        char buf[CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {0};
    msg.msg_iov = &iov, msg.msg_iovlen = 1;
    msg.msg_control = control.buf, msg.msg_controllen = sizeof control.buf;
    ssize_t n = recvmsg(c->fd, &msg, 0);
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? -1 : 0;
    *arrival = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof ts);
            *arrival = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
        }
    }
    if (*arrival == 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        *arrival = (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
    }
    c->len += (size_t)n;
    return n;
}

/* --- setting up one connection ------------------------------------------------------ */

static int dial(const char *host, const char *port) {
    struct addrinfo hints = {0}, *res, *ai;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) die(3, "getaddrinfo", gai_strerror(rc));
    int fd = -1;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) die(3, "connect", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {SETUP_TIMEOUT_MS / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Read until the wanted reply (parse() returns 1). */
static long long await_reply(struct conn *c, int id) {
    long long offset = -1;
    for (;;) {
        double arrival = 0;
        if (c->len) { /* what came with the response head, or with an earlier reply */
            int r = parse(c, arrival, id, &offset);
            if (r < 0) die(3, "setup failed", "the server refused or closed");
            if (r == 1) return offset;
        }
        ssize_t n = read_stamped(c, &arrival);
        if (n <= 0) die(3, "no reply during setup", n == 0 ? "connection closed" : "timeout");
        int r = parse(c, arrival, id, &offset);
        if (r < 0) die(3, "setup failed", "the server refused or closed");
        if (r == 1) return offset;
    }
}

/* Read an HTTP response head into c->buf and check its status code (`status`, three
 * digits); its length is returned, the bytes after it stay in c->buf. */
static size_t response_head(struct conn *c, const char *what, const char *status) {
    for (;;) {
        reserve(c, 4096);
        ssize_t k = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (k <= 0) die(3, what, k == 0 ? "connection closed" : strerror(errno));
        c->len += (size_t)k;
        const unsigned char *end = find(c->buf, c->len, "\r\n\r\n");
        if (!end) {
            if (c->len > 16384) die(3, what, "response head too long");
            continue;
        }
        size_t head = (size_t)(end - c->buf) + 4;
        if (c->len < 12 || memcmp(c->buf + 9, status, 3) != 0) {
            fprintf(stderr, "reader: %s: %.*s\n", what, (int)(head < 300 ? head : 300), c->buf);
            die(3, what, "not the status expected");
        }
        return head;
    }
}

static void upgrade(struct conn *c, const char *host, const char *port, const char *path) {
    unsigned char raw[16];
    char key[32], accept_b64[32], expected[96];
    for (int i = 0; i < 16; i++) raw[i] = (unsigned char)(rand() & 0xFF);
    base64(raw, 16, key);
    char request[1024];
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nUser-Agent: roomcast-bench-reader\r\n\r\n",
                     path, host, port, key);
    send_all(c->fd, (const unsigned char *)request, (size_t)n);
    size_t head = response_head(c, "handshake", "101");
    snprintf(expected, sizeof expected, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    unsigned char digest[20];
    sha1((const unsigned char *)expected, strlen(expected), digest);
    base64(digest, 20, accept_b64);
    if (!find(c->buf, head, accept_b64)) die(3, "handshake", "bad Sec-WebSocket-Accept");
    memmove(c->buf, c->buf + head, c->len - head);
    c->len -= head;
}

static void subscribe(struct conn *c, const char *room, const char *token) {
    char frame[1024];
    int n = token ? snprintf(frame, sizeof frame, "{\"op\":\"connect\",\"id\":0,\"token\":\"%s\"}", token)
                  : snprintf(frame, sizeof frame, "{\"op\":\"connect\",\"id\":0}");
    send_frame(c->fd, 1, (unsigned char *)frame, (size_t)n);
    await_reply(c, 0);
    n = snprintf(frame, sizeof frame, "{\"op\":\"subscribe\",\"id\":1,\"room\":\"%s\"}", room);
    send_frame(c->fd, 1, (unsigned char *)frame, (size_t)n);
    long long offset = await_reply(c, 1);
    if (offset < 0) die(3, "subscribe", "the reply has no offset");
    c->base = offset;
    c->expect = offset + 1;
}

/* An SSE subscriber: GET <prefix>/rooms/<room>/events, 200 and text/event-stream, then
 * the `subscribed` event gives its base. */
static void sse_subscribe(struct conn *c, const char *host, const char *port, const char *prefix,
                          const char *room, const char *token) {
    char request[2048], auth[1100] = "";
    if (token) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", token);
    int n = snprintf(request, sizeof request,
                     "GET %s/rooms/%s/events HTTP/1.1\r\nHost: %s:%s\r\n"
                     "Accept: text/event-stream\r\n%sUser-Agent: roomcast-bench-reader\r\n\r\n",
                     prefix, room, host, port, auth);
    send_all(c->fd, (const unsigned char *)request, (size_t)n);
    size_t head = response_head(c, "SSE", "200");
    c->chunked = find(c->buf, head, "chunked") != NULL;
    memmove(c->buf, c->buf + head, c->len - head);
    c->len -= head;
    c->sse = 1;
    long long offset = await_reply(c, 0);
    if (offset < 0) die(3, "SSE", "the subscribed event has no offset");
    c->base = offset;
    c->expect = offset + 1;
}

/* --- publishing ---------------------------------------------------------------------- */

static char pad[65536];

static double wall_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* The pad that brings the data object to about payload_bytes (bench/frames.py). */
static void make_pad(long payload_bytes) {
    char sample[128];
    int base = snprintf(sample, sizeof sample, "{\"bench_t\":%.6f,\"seq\":1000000,\"pad\":\"\"}",
                        wall_now());
    long k = payload_bytes - base;
    if (k < 0) k = 0;
    if (k > (long)sizeof pad - 1) k = sizeof pad - 1;
    memset(pad, 'x', (size_t)k);
    pad[k] = 0;
}

static void publish(struct conn *pub, const char *room, double now) {
    static char frame[sizeof pad + 512];
    long long n = ++sent;
    int len;
    if (relaying)
        len = snprintf(frame, sizeof frame,
                       "{\"type\":\"message\",\"room\":\"%s\",\"epoch\":\"bench\",\"offset\":%lld,"
                       "\"data\":{\"bench_t\":%.6f,\"seq\":%lld,\"pad\":\"%s\"},"
                       "\"sender\":\"bench\",\"ts\":%.6f}",
                       room, n, now, n, pad, now);
    else
        len = snprintf(frame, sizeof frame,
                       "{\"op\":\"publish\",\"id\":%lld,\"room\":\"%s\","
                       "\"data\":{\"bench_t\":%.6f,\"seq\":%lld,\"pad\":\"%s\"}}",
                       n + 1, room, now, n, pad);
    send_frame(pub->fd, 1, (unsigned char *)frame, (size_t)len);
}

/* --- main --------------------------------------------------------------------------- */

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

/* CPU seconds of process `pid` (utime + stime from /proc), -1 if unreadable. */
static double process_cpu(long pid) {
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char *p = strrchr(text, ')');
    unsigned long long utime, stime;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                     &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void usage(void) {
    die(2, "usage", "reader --url ws://HOST:PORT/PATH --subscribers N [--protocol roomcast|broadcast] "
                    "[--room ROOM] [--token TOKEN] [--rate R] [--window W] [--warmup S] "
                    "[--duration S] [--grace S] [--payload-bytes N] [--server-pid PID] "
                    "[--sse yes|no]");
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Latency percentiles (ms) of the events sent in [t0, t1), and the deliveries that
 * arrived in it, as JSON members. */
static void latency_json(double t0, double t1) {
    size_t n = 0, arrived = 0;
    double *lat = malloc((n_records ? n_records : 1) * sizeof *lat), sum = 0;
    if (!lat) die(3, "out of memory", NULL);
    for (size_t i = 0; i < n_records; i++) {
        if (records[i].arrival >= t0 && records[i].arrival < t1) arrived++;
        if (records[i].sent >= t0 && records[i].sent < t1) {
            lat[n] = (records[i].arrival - records[i].sent) * 1000.0;
            sum += lat[n++];
        }
    }
    qsort(lat, n, sizeof *lat, by_value);
    double q[4] = {0.50, 0.90, 0.99, 0.999}, v[4] = {0};
    for (int k = 0; k < 4 && n; k++) {
        size_t at = (size_t)(q[k] * (double)n);
        v[k] = lat[at < n ? at : n - 1];
    }
    printf("\"measured\":%zu,\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
           "\"p999\":%.3f,\"max\":%.3f,\"mean\":%.3f,\"count\":%zu}",
           arrived, v[0], v[1], v[2], v[3], n ? lat[n - 1] : 0.0, n ? sum / (double)n : 0.0, n);
    free(lat);
}

/* One read of c and what it brought; on EOF, a close or a protocol error the
 * connection is closed and taken out of epoll. Returns 0 when it is gone. */
static int service(int ep, struct conn *c) {
    double arrival;
    ssize_t n = read_stamped(c, &arrival);
    if (n < 0) return 1;
    if (n > 0 && parse(c, arrival, -1, NULL) >= 0) return 1;
    if (!c->closed) closes++;
    c->closed = 1;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    return 0;
}

int main(int argc, char **argv) {
    const char *url = NULL, *room = "bench", *token = NULL, *protocol = "roomcast";
    long subscribers = 0, window = 16, payload_bytes = 100, server_pid = 0;
    int sse = 0;
    double rate = 0, warmup = 1, duration = 8, grace = 5;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *a = argv[i], *v = argv[++i];
        if (!strcmp(a, "--url")) url = v;
        else if (!strcmp(a, "--subscribers")) subscribers = strtol(v, NULL, 10);
        else if (!strcmp(a, "--protocol")) protocol = v;
        else if (!strcmp(a, "--room")) room = v;
        else if (!strcmp(a, "--token")) token = v;
        else if (!strcmp(a, "--rate")) rate = strtod(v, NULL);
        else if (!strcmp(a, "--window")) window = strtol(v, NULL, 10);
        else if (!strcmp(a, "--warmup")) warmup = strtod(v, NULL);
        else if (!strcmp(a, "--duration")) duration = strtod(v, NULL);
        else if (!strcmp(a, "--grace")) grace = strtod(v, NULL);
        else if (!strcmp(a, "--payload-bytes")) payload_bytes = strtol(v, NULL, 10);
        else if (!strcmp(a, "--server-pid")) server_pid = strtol(v, NULL, 10);
        else if (!strcmp(a, "--sse")) sse = !strcmp(v, "yes");
        else usage();
    }
    relaying = !strcmp(protocol, "broadcast");
    if (!url || subscribers <= 0 || window <= 0 || rate < 0 || duration <= 0 || warmup < 0 ||
        grace < 0 || (!relaying && strcmp(protocol, "roomcast")) || (sse && relaying))
        usage();
    if (strncmp(url, "ws://", 5) != 0) die(2, "--url", "ws://host:port/path only");
    char host[256], port[16] = "80", path[512] = "/";
    const char *h = url + 5, *slash = strchr(h, '/'), *colon = strchr(h, ':');
    size_t hostlen = slash ? (size_t)(slash - h) : strlen(h);
    if (colon && (!slash || colon < slash)) {
        hostlen = (size_t)(colon - h);
        size_t plen = slash ? (size_t)(slash - colon - 1) : strlen(colon + 1);
        if (plen == 0 || plen >= sizeof port) die(2, "--url", "bad port");
        memcpy(port, colon + 1, plen);
        port[plen] = 0;
    }
    if (hostlen == 0 || hostlen >= sizeof host) die(2, "--url", "bad host");
    memcpy(host, h, hostlen);
    host[hostlen] = 0;
    if (slash) snprintf(path, sizeof path, "%s", slash);
    char prefix[512]; /* SSE streams live beside the WebSocket endpoint: <prefix>/ws */
    snprintf(prefix, sizeof prefix, "%s", path);
    size_t plen = strlen(prefix);
    if (plen >= 3 && !strcmp(prefix + plen - 3, "/ws")) prefix[plen - 3] = 0;
    make_pad(payload_bytes);

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());

    /* conns[0] publishes; conns[1..subscribers] subscribe */
    struct conn *conns = calloc((size_t)subscribers + 1, sizeof *conns);
    if (!conns) die(3, "out of memory", NULL);
    struct conn *pub = &conns[0];
    int ep = epoll_create1(0), one = 1;
    for (long i = 0; i <= subscribers && !stopping; i++) {
        struct conn *c = &conns[i];
        c->publisher = i == 0;
        c->fd = dial(host, port);
        if (sse && !c->publisher) {
            sse_subscribe(c, host, port, prefix, room, token);
        } else {
            upgrade(c, host, port, path);
            if (relaying) {
                c->base = 0, c->expect = 1;
            } else if (c->publisher) {
                char frame[1024];
                int n = token ? snprintf(frame, sizeof frame,
                                         "{\"op\":\"connect\",\"id\":0,\"token\":\"%s\"}", token)
                              : snprintf(frame, sizeof frame, "{\"op\":\"connect\",\"id\":0}");
                send_frame(c->fd, 1, (unsigned char *)frame, (size_t)n);
                await_reply(c, 0);
            } else {
                subscribe(c, room, token);
            }
        }
        setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
        struct timeval none = {0, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die(3, "epoll_ctl", strerror(errno));
        if (c->len) parse(c, 0, -1, NULL); /* frames that came with the reply */
    }
    struct epoll_event events[1024];
    long open_conns = subscribers + 1;
    if (relaying) { /* a barrier: every subscriber has seen a frame the publisher sent */
        double deadline = wall_now() + SETUP_TIMEOUT_MS / 1000.0, next = 0;
        long synced = 0, seq = 0;
        while (synced < subscribers && !stopping) {
            double now = wall_now();
            if (now > deadline) die(3, "barrier", "not every subscriber saw the publisher's frames");
            if (now >= next) {
                char frame[256];
                int n = snprintf(frame, sizeof frame, "{\"type\":\"sync\",\"room\":\"%s\",\"seq\":%ld}",
                                 room, ++seq);
                send_frame(pub->fd, 1, (unsigned char *)frame, (size_t)n);
                next = now + 0.1;
            }
            int k = epoll_wait(ep, events, 1024, 20);
            for (int i = 0; i < k; i++) {
                struct conn *c = events[i].data.ptr;
                if (!service(ep, c)) open_conns--;
            }
            synced = 0;
            for (long i = 1; i <= subscribers; i++) synced += conns[i].synced;
        }
    }
    printf("ready %ld\n", subscribers);
    fflush(stdout);

    double t_go = wall_now() + 0.1, t_measure = t_go + warmup, t_stop = t_measure + duration;
    double t_end = t_stop + grace, next_due = t_go, interval = rate > 0 ? 1.0 / rate : 0;
    double cpu_at_measure = -1, cpu_at_stop = -1, server_at_measure = -1, server_at_stop = -1;
    long long sent_in_window = 0;
    while (!stopping && open_conns > 0) {
        double now = wall_now();
        if (cpu_at_measure < 0 && now >= t_measure) {
            cpu_at_measure = cpu_seconds();
            if (server_pid) server_at_measure = process_cpu(server_pid);
        }
        if (cpu_at_stop < 0 && now >= t_stop) {
            cpu_at_stop = cpu_seconds();
            if (server_pid) server_at_stop = process_cpu(server_pid);
        }
        if (now >= t_stop) {
            long long done = 0;
            for (long i = 1; i <= subscribers; i++)
                done += conns[i].closed || conns[i].expect > max_acked;
            if (now >= t_end || (acked + refused >= sent && done == subscribers)) break;
        }
        /* publish what is due, as the window allows */
        while (now >= t_go && now < t_stop && sent - acked - refused < window && !pub->closed &&
               (interval == 0 || next_due <= now)) {
            publish(pub, room, now);
            if (now >= t_measure) sent_in_window++;
            next_due += interval;
            now = wall_now();
        }
        /* sleep until the next thing due: a publish, the window's edges, the end */
        double wake = now < t_go ? t_go : now < t_measure ? t_measure : now < t_stop ? t_stop : t_end;
        if (interval && now < t_stop && next_due < wake && sent - acked - refused < window)
            wake = next_due;
        int timeout = wake <= now ? 0 : (int)((wake - now) * 1000) + 1;
        if (timeout > 100) timeout = 100;
        int k = epoll_wait(ep, events, 1024, timeout);
        for (int i = 0; i < k; i++) {
            struct conn *c = events[i].data.ptr;
            if (!service(ep, c)) open_conns--;
        }
    }
    if (cpu_at_measure < 0 || cpu_at_stop < 0) { /* cut short */
        t_stop = wall_now();
        cpu_at_stop = cpu_seconds();
        if (cpu_at_measure < 0) cpu_at_measure = cpu_at_stop, t_measure = t_stop;
    }
    double measured = t_stop - t_measure;

    long long deliveries = 0, missing = 0;
    for (long i = 1; i <= subscribers; i++) {
        deliveries += conns[i].count;
        if (conns[i].expect <= max_acked) missing += max_acked - conns[i].expect + 1;
    }
    printf("{\"subscribers\":%ld,\"protocol\":\"%s\",\"sse\":%s,\"rate\":%.3f,\"window\":%ld,"
           "\"published\":%lld,\"published_in_window\":%lld,\"acked\":%lld,\"refused\":%lld,"
           "\"max_acked\":%lld,\"deliveries\":%lld,\"gaps\":%lld,\"missing\":%lld,"
           "\"regressions\":%lld,\"other_frames\":%lld,\"closed\":%lld,\"errors\":%lld,"
           "\"base_offset\":%lld,\"max_frame\":%lld,\"measured_s\":%.3f,"
           "\"window_start\":%.6f,\"window_stop\":%.6f,\"cpu\":%.4f,\"server_cpu\":",
           subscribers, protocol, sse ? "true" : "false", rate, window, sent, sent_in_window, acked, refused, max_acked,
           deliveries, gaps, missing, regressions, other_frames, closes, errors,
           subscribers ? conns[1].base : -1, max_frame_seen, measured, t_measure, t_stop,
           measured > 0 ? (cpu_at_stop - cpu_at_measure) / measured : 0.0);
    if (server_at_measure >= 0 && server_at_stop >= 0 && measured > 0)
        printf("%.4f,", (server_at_stop - server_at_measure) / measured);
    else
        printf("null,");
    latency_json(t_measure, t_stop);
    printf("}\n");
    return stopping ? 4 : 0;
}
