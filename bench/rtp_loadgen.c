/* rtp_loadgen.c - paced RTP load generator + sink for the media benchmarks (loopback only).
 *
 * Derived from the project's perf anchor harness (shared perf/rtp_loadgen.c) with two changes
 * so it can drive the edge's own media path: packets are real RTP (per-leg sequence numbers,
 * timestamps advancing by 160, one SSRC per leg, PT 8) so a jitter buffer accepts them, and
 * the edge's ports are read from a file (one line "a_port b_port" per call) instead of being
 * computed, because the port allocator decides them.
 *
 * Call i: caller_i (127.0.0.1:30000+i) sends to the edge's a_port, callee_i (32000+i) to
 * b_port. The sink counts what comes back and, when the payload still carries the send time
 * (relaying without re-encoding), the one-way latency through the edge.
 *
 * usage: rtp_loadgen <total_pps> <seconds> <portfile> [pkt_bytes]
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

#define CALLER_BASE 30000
#define CALLEE_BASE 32000
#define NBUCKET 200001
#define MAXCALLS 4000

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint32_t hist[NBUCKET];

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

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s total_pps seconds portfile [pkt]\n", argv[0]); return 2; }
    double pps = atof(argv[1]);
    double secs = atof(argv[2]);
    int pkt = argc > 4 ? atoi(argv[4]) : 172;
    static int aport[MAXCALLS], bport[MAXCALLS];
    int ncalls = 0;
    FILE *pf = fopen(argv[3], "r");
    if (!pf) { perror("portfile"); return 2; }
    while (ncalls < MAXCALLS && fscanf(pf, "%d %d", &aport[ncalls], &bport[ncalls]) == 2) ncalls++;
    fclose(pf);
    int nsock = 2 * ncalls;
    int *fd = malloc(sizeof(int) * nsock);
    uint16_t *seq = calloc(nsock, sizeof *seq);
    uint32_t *rtpts = calloc(nsock, sizeof *rtpts);
    struct sockaddr_in *dst = calloc(nsock, sizeof *dst);
    for (int i = 0; i < ncalls; i++) {
        fd[2 * i] = mksock(CALLER_BASE + i);
        fd[2 * i + 1] = mksock(CALLEE_BASE + i);
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
    unsigned char buf[2048];
    memset(buf, 0xd5, sizeof buf);
    buf[0] = 0x80; buf[1] = 8;
    uint64_t sent = 0, recvd = 0, send_fail = 0, timed = 0;
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
    uint64_t drain_until = tend + 300000000ull;
    for (;;) {
        uint64_t t = now_ns();
        if (t >= drain_until) break;
        if (t < tend) {
            uint64_t due = (uint64_t)((double)(t - t0) * pps / 1e9);
            int burst = 0;
            while (sent + send_fail < due && burst < 256) {
                uint16_t s = htons(seq[rr]);
                uint32_t ts = htonl(rtpts[rr]);
                uint32_t ssrc = htonl(0x10000u + (uint32_t)rr);
                memcpy(buf + 2, &s, 2);
                memcpy(buf + 4, &ts, 4);
                memcpy(buf + 8, &ssrc, 4);
                uint64_t sts = now_ns();
                memcpy(buf + 12, "SPTS", 4);
                memcpy(buf + 16, &sts, 8);
                ssize_t r = sendto(fd[rr], buf, pkt, 0, (struct sockaddr *)&dst[rr], sizeof dst[rr]);
                if (r == pkt) sent++; else send_fail++;
                seq[rr]++;
                rtpts[rr] += 160;
                rr = (rr + 1 == nsock) ? 0 : rr + 1;
                burst++;
            }
        }
        struct epoll_event ev[256];
        int ne = epoll_wait(ep, ev, 256, 0);
        int got_any = 0;
        for (int e = 0; e < ne; e++) {
            int i = ev[e].data.u32;
            int n;
            while ((n = recvmmsg(fd[i], msgs, 64, MSG_DONTWAIT, NULL)) > 0) {
                got_any = 1;
                uint64_t tr = now_ns();
                for (int k = 0; k < n; k++) {
                    if (msgs[k].msg_len >= 24 && memcmp(rbuf[k] + 12, "SPTS", 4) == 0) {
                        uint64_t sts;
                        memcpy(&sts, rbuf[k] + 16, 8);
                        uint64_t us = (tr - sts) / 1000;
                        if (us >= NBUCKET) us = NBUCKET - 1;
                        hist[us]++;
                        timed++;
                    }
                }
                recvd += n;
                if (n < 64) break;
            }
        }
        if (!got_any) {
            struct timespec sl = {0, 50000};
            nanosleep(&sl, NULL);
        }
    }
    double el = (double)(tend - t0) / 1e9;
    uint64_t acc = 0, p50 = 0, p99 = 0;
    for (uint64_t i = 0; i < NBUCKET && timed; i++) {
        if (!hist[i]) continue;
        acc += hist[i];
        if (!p50 && acc >= timed * 0.50) p50 = i;
        if (!p99 && acc >= timed * 0.99) p99 = i;
    }
    struct rusage ru; getrusage(RUSAGE_SELF, &ru);
    double lgcpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("{\"loadgen_cpu_pct\": %.1f, \"offered_pps\": %.0f, \"sent\": %llu, \"send_fail\": %llu, "
           "\"recvd\": %llu, \"timed\": %llu, \"delivered_pps\": %.0f, \"loss_pct\": %.3f, "
           "\"lat_us_p50\": %llu, \"lat_us_p99\": %llu, \"ncalls\": %d, \"secs\": %.1f}\n",
           100.0 * lgcpu / ((double)(now_ns() - t0) / 1e9), pps, (unsigned long long)sent,
           (unsigned long long)send_fail, (unsigned long long)recvd, (unsigned long long)timed,
           recvd / el, sent ? 100.0 * (double)(sent - (recvd > sent ? sent : recvd)) / sent : 0.0,
           (unsigned long long)p50, (unsigned long long)p99, ncalls, el);
    return 0;
}
