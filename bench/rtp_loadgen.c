/* rtp_loadgen.c - paced RTP load generator + sink for the media benchmarks (loopback only).
 *
 * Derived from the project's perf anchor harness (shared perf/rtp_loadgen.c) with changes so it
 * can drive the edge's own media path:
 *  - packets are real RTP (per-leg sequence numbers and timestamps, one SSRC per leg), so a
 *    jitter buffer accepts them;
 *  - the edge's ports come from the command line, because the edge's port allocator decides
 *    them: either a layout "FIRST:NCALLS[:STRIDE]" (call i's leg a at FIRST + STRIDE*i, leg b at
 *    FIRST + STRIDE*i + 2, STRIDE 4 by default: the allocator hands out RTP-even/RTCP-odd
 *    pairs in order, a then b) or the name of a file with one line "a_port b_port" per call
 *    (when the allocator had to skip ports another process holds);
 *  - every leg's payload type and timestamp step can be set, and a leg can replay frames from a
 *    file (length-prefixed: u16 little-endian length, then the bytes), e.g. pre-encoded Opus.
 *
 * Latency, two ways. Relayed packets keep their payload, which carries "SPTS" + the send time:
 * exact one-way latency per packet. A bridge decodes, mixes (maybe resamples) and re-encodes,
 * so bytes do not survive; for that, one packet per second per G.711 leg is a loud 1 kHz square
 * wave among near-silent ones, and the sink times the first G.711 frame that comes out on the
 * other leg at least a quarter loud (the resampler's delay splits the burst over two frames):
 * "marker" latency = jitter buffer + tick alignment + processing.
 *
 * Call i: caller_i (127.0.0.1:30000+i) sends to the edge's a port, callee_i (32000+i) to b;
 * -p CALLER_BASE:CALLEE_BASE[:STRIDE] moves the phones (two benchmarks on one host); STRIDE 2
 * leaves each phone's RTCP port (RTP + 1, where the edge sends its reports) unbound.
 *
 * usage: rtp_loadgen [-p CB:EB[:STRIDE]] <total_pps> <seconds> <layout|portfile> [pkt_bytes] [a_spec] [b_spec]
 *   total_pps counts both directions (a G.711 call offers 100 pps to the edge).
 *   spec = PT:TS_STEP[:FRAMEFILE]   default 8:160 (PCMA, 20 ms at 8 kHz)
 * Build: gcc -O2 -o rtp_loadgen rtp_loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NBUCKET 200001 /* 1 us buckets up to 200 ms */
#define MAXCALLS 4000
#define MAXFRAMES 64
#define MARK_EVERY 50 /* one loud frame per second per leg */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint32_t hist[NBUCKET], mhist[NBUCKET];

static int mksock(int port) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int buf = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); exit(1); }
    return s;
}

struct legspec {
    int pt;
    uint32_t ts_step;
    int nframes;
    int flen[MAXFRAMES];
    unsigned char *frame[MAXFRAMES];
};

static void parse_spec(const char *s, struct legspec *l) {
    char path[1024] = "";
    l->pt = 8; l->ts_step = 160; l->nframes = 0;
    if (!s) return;
    if (sscanf(s, "%d:%u:%1023s", &l->pt, &l->ts_step, path) < 2) {
        fprintf(stderr, "bad leg spec %s (PT:TS_STEP[:FILE])\n", s); exit(2);
    }
    if (!path[0]) return;
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    unsigned char lenb[2];
    while (l->nframes < MAXFRAMES && fread(lenb, 1, 2, f) == 2) {
        int n = lenb[0] | (lenb[1] << 8);
        if (n <= 0 || n > 1400) { fprintf(stderr, "bad frame length %d in %s\n", n, path); exit(2); }
        l->frame[l->nframes] = malloc(n);
        if (fread(l->frame[l->nframes], 1, n, f) != (size_t)n) { fprintf(stderr, "short %s\n", path); exit(2); }
        l->flen[l->nframes++] = n;
    }
    fclose(f);
    if (!l->nframes) { fprintf(stderr, "no frames in %s\n", path); exit(2); }
}

/* Is this G.711 byte loud (|x| >= 4096, segment >= 5)? */
static int loud(unsigned char c, int pt) {
    if (pt == 8) return (((c ^ 0x55) & 0x70) >> 4) >= 5;
    if (pt == 0) return (((~c) & 0x70) >> 4) >= 5;
    return 0;
}

static void pcts(const uint32_t *h, uint64_t n, uint64_t *p50, uint64_t *p99) {
    uint64_t acc = 0;
    *p50 = *p99 = 0;
    for (uint64_t i = 0; i < NBUCKET && n; i++) {
        if (!h[i]) continue;
        acc += h[i];
        if (!*p50 && acc >= n * 0.50) *p50 = i;
        if (!*p99 && acc >= n * 0.99) *p99 = i;
    }
}

int main(int argc, char **argv) {
    int caller_base = 30000, callee_base = 32000, pstride = 1;
    if (argc > 2 && strcmp(argv[1], "-p") == 0) {
        if (sscanf(argv[2], "%d:%d:%d", &caller_base, &callee_base, &pstride) < 2 || pstride < 1) {
            fprintf(stderr, "-p CALLER_BASE:CALLEE_BASE[:STRIDE]\n"); return 2;
        }
        argc -= 2; argv += 2;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: %s total_pps seconds layout|portfile [pkt] [a_spec] [b_spec]\n", argv[0]);
        return 2;
    }
    double pps = atof(argv[1]);
    double secs = atof(argv[2]);
    int pkt = argc > 4 ? atoi(argv[4]) : 172;
    if (pkt < 24 || pkt > 1500) { fprintf(stderr, "pkt must be 24..1500\n"); return 2; }
    struct legspec leg[2];
    parse_spec(argc > 5 ? argv[5] : NULL, &leg[0]);
    parse_spec(argc > 6 ? argv[6] : NULL, &leg[1]);
    static int aport[MAXCALLS], bport[MAXCALLS];
    int ncalls = 0;
    int first, n, stride = 4;
    if (strchr(argv[3], ':') && sscanf(argv[3], "%d:%d:%d", &first, &n, &stride) >= 2) {
        if (n > MAXCALLS) { fprintf(stderr, "at most %d calls\n", MAXCALLS); return 2; }
        for (ncalls = 0; ncalls < n; ncalls++) {
            aport[ncalls] = first + stride * ncalls;
            bport[ncalls] = first + stride * ncalls + 2;
        }
    } else {
        FILE *pf = fopen(argv[3], "r");
        if (!pf) { perror("portfile"); return 2; }
        while (ncalls < MAXCALLS && fscanf(pf, "%d %d", &aport[ncalls], &bport[ncalls]) == 2) ncalls++;
        fclose(pf);
    }
    if (!ncalls) { fprintf(stderr, "no calls\n"); return 2; }
    int nsock = 2 * ncalls;
    int *fd = malloc(sizeof(int) * nsock);
    uint16_t *seq = calloc(nsock, sizeof *seq);
    uint32_t *rtpts = calloc(nsock, sizeof *rtpts);
    uint64_t *mark_t = calloc(nsock, sizeof *mark_t);
    struct sockaddr_in *dst = calloc(nsock, sizeof *dst);
    for (int i = 0; i < ncalls; i++) {
        fd[2 * i] = mksock(caller_base + pstride * i);
        fd[2 * i + 1] = mksock(callee_base + pstride * i);
        for (int j = 0; j < 2; j++) {
            dst[2 * i + j].sin_family = AF_INET;
            dst[2 * i + j].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        }
        dst[2 * i].sin_port = htons(aport[i]);
        dst[2 * i + 1].sin_port = htons(bport[i]);
    }
    int ep = epoll_create1(0);
    for (int i = 0; i < nsock; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &e);
    }
    /* G.711 payloads: near silence (A-law 0xd5 = +8), and the loud marker: 1 kHz square wave
     * at about +-16000 (A-law 0xba / 0x3a), 4 samples up, 4 down */
    unsigned char quiet[2048], loudbuf[2048], buf[2048];
    memset(quiet, 0xd5, sizeof quiet);
    for (int k = 0; k < (int)sizeof loudbuf; k++) loudbuf[k] = ((k / 4) % 2) ? 0x3a : 0xba;
    uint64_t sent = 0, recvd = 0, send_fail = 0, timed = 0, marks_sent = 0, marks = 0;
    uint64_t t0 = now_ns(), tend = t0 + (uint64_t)(secs * 1e9);
    int rr = 0;
    struct mmsghdr msgs[64];
    struct iovec iov[64];
    static unsigned char rbuf[64][2048];
    for (int k = 0; k < 64; k++) {
        iov[k].iov_base = rbuf[k]; iov[k].iov_len = 2048;
        memset(&msgs[k], 0, sizeof msgs[k]);
        msgs[k].msg_hdr.msg_iov = &iov[k]; msgs[k].msg_hdr.msg_iovlen = 1;
    }
    uint64_t drain_until = tend + 300000000ull; /* 300 ms drain after sending stops */
    for (;;) {
        uint64_t t = now_ns();
        if (t >= drain_until) break;
        if (t < tend) {
            uint64_t due = (uint64_t)((double)(t - t0) * pps / 1e9);
            int burst = 0;
            while (sent + send_fail < due && burst < 256) {
                struct legspec *l = &leg[rr & 1];
                int len;
                uint16_t s16 = seq[rr];
                buf[0] = 0x80;
                buf[1] = (unsigned char)l->pt;
                uint16_t s = htons(s16);
                uint32_t ts = htonl(rtpts[rr]);
                uint32_t ssrc = htonl(0x10000u + (uint32_t)rr);
                memcpy(buf + 2, &s, 2);
                memcpy(buf + 4, &ts, 4);
                memcpy(buf + 8, &ssrc, 4);
                uint64_t sts = now_ns();
                if (l->nframes) {
                    int f = s16 % l->nframes;
                    memcpy(buf + 12, l->frame[f], l->flen[f]);
                    len = 12 + l->flen[f];
                } else {
                    int mark = s16 % MARK_EVERY == 0;
                    memcpy(buf + 12, mark ? loudbuf : quiet, pkt - 12);
                    memcpy(buf + 12, "SPTS", 4);
                    memcpy(buf + 16, &sts, 8);
                    len = pkt;
                    if (mark) { mark_t[rr] = sts; marks_sent++; }
                }
                ssize_t r = sendto(fd[rr], buf, len, 0, (struct sockaddr *)&dst[rr], sizeof dst[rr]);
                if (r == len) sent++; else send_fail++;
                seq[rr]++;
                rtpts[rr] += l->ts_step;
                rr = (rr + 1 == nsock) ? 0 : rr + 1;
                burst++;
            }
        }
        struct epoll_event ev[256];
        int ne = epoll_wait(ep, ev, 256, 0);
        int got_any = 0;
        for (int e = 0; e < ne; e++) {
            int i = ev[e].data.u32;
            int got;
            while ((got = recvmmsg(fd[i], msgs, 64, MSG_DONTWAIT, NULL)) > 0) {
                got_any = 1;
                uint64_t tr = now_ns();
                for (int k = 0; k < got; k++) {
                    unsigned char *p = rbuf[k];
                    int plen = (int)msgs[k].msg_len;
                    if (plen >= 24 && memcmp(p + 12, "SPTS", 4) == 0) {
                        uint64_t sts;
                        memcpy(&sts, p + 16, 8);
                        uint64_t us = (tr - sts) / 1000;
                        if (us >= NBUCKET) us = NBUCKET - 1;
                        hist[us]++;
                        timed++;
                    } else if (plen > 12 && mark_t[i ^ 1]) {
                        int pt = p[1] & 0x7f, nl = 0;
                        for (int b = 12; b < plen; b++) nl += loud(p[b], pt);
                        if (4 * nl >= plen - 12) { /* resampling splits it over two frames */
                            uint64_t us = (tr - mark_t[i ^ 1]) / 1000;
                            if (us >= NBUCKET) us = NBUCKET - 1;
                            mhist[us]++;
                            marks++;
                            mark_t[i ^ 1] = 0; /* time the first loud frame only */
                        }
                    }
                }
                recvd += got;
                if (got < 64) break;
            }
        }
        if (!got_any) {
            struct timespec sl = {0, 50000};
            nanosleep(&sl, NULL);
        }
    }
    double el = (double)(tend - t0) / 1e9;
    uint64_t p50, p99, m50, m99;
    pcts(hist, timed, &p50, &p99);
    pcts(mhist, marks, &m50, &m99);
    struct rusage ru; getrusage(RUSAGE_SELF, &ru);
    double lgcpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("{\"loadgen_cpu_pct\": %.1f, \"offered_pps\": %.0f, \"sent\": %llu, \"send_fail\": %llu, "
           "\"recvd\": %llu, \"timed\": %llu, \"delivered_pps\": %.0f, \"loss_pct\": %.3f, "
           "\"lat_us_p50\": %llu, \"lat_us_p99\": %llu, \"marks_sent\": %llu, \"marks\": %llu, "
           "\"mark_us_p50\": %llu, \"mark_us_p99\": %llu, \"ncalls\": %d, \"secs\": %.1f}\n",
           100.0 * lgcpu / ((double)(now_ns() - t0) / 1e9), pps, (unsigned long long)sent,
           (unsigned long long)send_fail, (unsigned long long)recvd, (unsigned long long)timed,
           recvd / el, sent ? 100.0 * (double)(sent - (recvd > sent ? sent : recvd)) / sent : 0.0,
           (unsigned long long)p50, (unsigned long long)p99, (unsigned long long)marks_sent,
           (unsigned long long)marks, (unsigned long long)m50, (unsigned long long)m99, ncalls, el);
    return 0;
}
