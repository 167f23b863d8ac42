/* A fixed-rate (open-loop) HTTP/1.1 load generator, in the manner of wrk2, which these machines
 * do not have. Python load generators cannot send 1,000 timed requests a second from one core
 * and measure them; this one spends a few microseconds per request.
 *
 *   loadgen --url http://127.0.0.1:8080/path --rate 1000 --seconds 10 [--connections 32]
 *           [--warmup 2] [--body FILE] [--header 'name: value'] ... [--capture header-name]
 *           [--timeline FILE]
 *
 * Request n is due at start + n / rate. It goes out on an idle keep-alive connection as soon as
 * it is due; if none is idle it waits, and its latency still counts from when it was due, so a
 * stalled server is not hidden by sending later (no coordinated omission). Requests due during
 * the warm-up are sent but not measured. Responses are parsed (Content-Length or chunked);
 * anything else, a connection broken during an exchange or a non-2xx status counts as an error;
 * idle connections the server closes are reopened.
 *
 * Prints one JSON object: counts, latency percentiles in ms, and those of a numeric response
 * header (--capture), e.g. a server's own account of its time.
 *
 * Built on demand by stress/loadgen.py with the machine's C compiler.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADERS 16
#define BUFFER 262144

typedef struct {
    int fd;
    int busy;
    double due;         /* when its request was due (monotonic seconds) */
    int measured;       /* the request was due after the warm-up */
    size_t used;        /* bytes in buffer */
    char *buffer;
} connection_t;

static struct sockaddr_in address;
static char *request;
static size_t request_length;
static const char *capture;
static FILE *timeline; /* --timeline FILE: one line per measured answer (due offset, latency, connection) */
static double *latencies, *captured;
static long latency_count, captured_count;
static long errors, non_2xx, broken;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static int open_connection(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0 && errno != EINPROGRESS) die("connect");
    struct pollfd wait = {fd, POLLOUT, 0};
    if (poll(&wait, 1, 5000) != 1) die("connect (timed out)");
    int failure = 0;
    socklen_t size = sizeof failure;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &size);
    if (failure) {
        errno = failure;
        die("connect");
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int send_request(int fd) {
    size_t sent = 0;
    while (sent < request_length) {
        ssize_t n = send(fd, request + sent, request_length - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
        } else if (n < 0 && errno == EAGAIN) {
            struct pollfd wait = {fd, POLLOUT, 0};
            poll(&wait, 1, 1000);
        } else {
            return -1;
        }
    }
    return 0;
}

/* Where the response in buf ends, 0 if more is needed, -1 if it is malformed. Sets the status
 * and the captured header's value (NAN when absent). */
static long response_end(const char *buf, size_t used, int *status, double *value) {
    const char *head_end = memmem(buf, used, "\r\n\r\n", 4);
    if (!head_end) return used > BUFFER / 2 ? -1 : 0;
    size_t head = (size_t)(head_end - buf) + 4;
    if (used < 12 || memcmp(buf, "HTTP/1.", 7) != 0) return -1;
    *status = atoi(buf + 9);
    *value = 0.0 / 0.0;
    long length = -1;
    int chunked = 0;
    const char *line = memchr(buf, '\n', head) + 1;
    while (line < head_end) {
        const char *end = memchr(line, '\n', (size_t)(head_end + 2 - line));
        const char *colon = memchr(line, ':', (size_t)(end - line));
        if (colon) {
            size_t name = (size_t)(colon - line);
            const char *v = colon + 1;
            while (*v == ' ') v++;
            if (name == 14 && strncasecmp(line, "content-length", 14) == 0) length = atol(v);
            if (name == 17 && strncasecmp(line, "transfer-encoding", 17) == 0 && strncasecmp(v, "chunked", 7) == 0)
                chunked = 1;
            if (capture && name == strlen(capture) && strncasecmp(line, capture, name) == 0) *value = atof(v);
        }
        line = end + 1;
    }
    if (!chunked) {
        if (length < 0) return -1; /* close-delimited bodies cannot be timed on keep-alive */
        return used >= head + (size_t)length ? (long)(head + (size_t)length) : 0;
    }
    size_t at = head;
    for (;;) {
        const char *size_end = memmem(buf + at, used - at, "\r\n", 2);
        if (!size_end) return 0;
        char *parsed;
        long size = strtol(buf + at, &parsed, 16);
        if (parsed == buf + at || size < 0) return -1;
        at = (size_t)(size_end - buf) + 2;
        if (size == 0) { /* trailers end with an empty line */
            const char *trailers_end = memmem(buf + at - 2, used - at + 2, "\r\n\r\n", 4);
            return trailers_end ? (long)(trailers_end - buf) + 4 : 0;
        }
        if (used < at + (size_t)size + 2) return 0;
        at += (size_t)size + 2;
    }
}

static void build_request(const char *path, const char *host, const char *body, size_t body_length,
                          char **headers, int header_count) {
    size_t size = strlen(path) + strlen(host) + body_length + 256;
    for (int i = 0; i < header_count; i++) size += strlen(headers[i]) + 2;
    request = malloc(size);
    int n = sprintf(request, "%s %s HTTP/1.1\r\nHost: %s\r\n", body ? "POST" : "GET", path, host);
    if (body) n += sprintf(request + n, "Content-Length: %zu\r\n", body_length);
    for (int i = 0; i < header_count; i++) n += sprintf(request + n, "%s\r\n", headers[i]);
    n += sprintf(request + n, "\r\n");
    if (body) memcpy(request + n, body, body_length);
    request_length = (size_t)n + body_length;
}

static char *read_file(const char *name, size_t *length) {
    FILE *file = fopen(name, "rb");
    if (!file) die(name);
    fseek(file, 0, SEEK_END);
    *length = (size_t)ftell(file);
    rewind(file);
    char *data = malloc(*length + 1);
    if (fread(data, 1, *length, file) != *length) die(name);
    fclose(file);
    return data;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_quantiles(const char *name, double *values, long count) {
    qsort(values, (size_t)count, sizeof *values, compare);
    printf("\"%s\": {", name);
    const double points[] = {50, 90, 99, 99.9};
    const char *names[] = {"p50", "p90", "p99", "p99.9"};
    for (int i = 0; i < 4; i++) {
        double v = count ? values[(long)((count - 1) * points[i] / 100.0 + 0.5)] : 0;
        printf("\"%s\": %.4f, ", names[i], v);
    }
    printf("\"max\": %.4f}", count ? values[count - 1] : 0);
}

int main(int argc, char **argv) {
    const char *url = NULL, *body_file = NULL;
    double rate = 1000, seconds = 10, warmup = 2;
    int connection_count = 32, header_count = 0;
    char *headers[MAX_HEADERS];
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--url")) url = argv[i + 1];
        else if (!strcmp(argv[i], "--rate")) rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--connections")) connection_count = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--body")) body_file = argv[i + 1];
        else if (!strcmp(argv[i], "--capture")) capture = argv[i + 1];
        else if (!strcmp(argv[i], "--timeline")) {
            timeline = fopen(argv[i + 1], "w");
            if (!timeline) die(argv[i + 1]);
        }
        else if (!strcmp(argv[i], "--header") && header_count < MAX_HEADERS) headers[header_count++] = argv[i + 1];
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    char host[256];
    int port = 80;
    char path[2048] = "/";
    if (!url || rate <= 0 || seconds <= 0 || connection_count < 1 ||
        sscanf(url, "http://%255[^:/]:%d%2047s", host, &port, path) < 2) {
        fprintf(stderr, "usage: loadgen --url http://IPV4:PORT/PATH --rate R --seconds S [options]\n");
        return 2;
    }
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, strcmp(host, "localhost") ? host : "127.0.0.1", &address.sin_addr) != 1) {
        fprintf(stderr, "the host must be an IPv4 address: %s\n", host);
        return 2;
    }
    size_t body_length = 0;
    char *body = body_file ? read_file(body_file, &body_length) : NULL;
    char host_header[300];
    snprintf(host_header, sizeof host_header, "%s:%d", host, port);
    build_request(path, host_header, body, body_length, headers, header_count);

    long total = (long)((warmup + seconds) * rate);
    latencies = malloc(sizeof(double) * (size_t)total);
    captured = malloc(sizeof(double) * (size_t)total);
    connection_t *connections = calloc((size_t)connection_count, sizeof *connections);
    int poller = epoll_create1(0);
    int timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event event = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(poller, EPOLL_CTL_ADD, timer, &event);
    for (int i = 0; i < connection_count; i++) {
        connections[i].fd = open_connection();
        connections[i].buffer = malloc(BUFFER);
        event = (struct epoll_event){.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(poller, EPOLL_CTL_ADD, connections[i].fd, &event);
    }

    double start = now() + 0.01, measured_from = start + warmup;
    long next = 0, outstanding = 0;
    int cursor = 0;
    double give_up = start + warmup + seconds + 10;
    while ((next < total || outstanding > 0) && now() < give_up) {
        double t = now();
        /* Take the connections in turn, so that none idles long enough for the server to close it. */
        for (int k = 0; k < connection_count && next < total && start + next / rate <= t; k++) {
            int i = cursor = (cursor + 1) % connection_count;
            connection_t *c = &connections[i];
            if (c->busy) continue;
            c->due = start + next / rate;
            c->measured = c->due >= measured_from;
            next++;
            if (send_request(c->fd) < 0) {
                broken++;
                errors += c->measured;
                close(c->fd);
                c->fd = open_connection();
                event = (struct epoll_event){.events = EPOLLIN, .data.u32 = (uint32_t)i};
                epoll_ctl(poller, EPOLL_CTL_ADD, c->fd, &event);
                continue;
            }
            c->busy = 1;
            c->used = 0;
            outstanding++;
        }
        /* Wake for the next request when it falls due. One that fell due since the loop above
         * looked goes out at once if a connection is idle; if none is, only an answer can free
         * one, and the timer stays off. */
        double due = start + next / rate;
        int idle = 0;
        for (int i = 0; i < connection_count && !idle; i++) idle = !connections[i].busy;
        if (next < total && due <= now() && idle) continue;
        struct itimerspec when = {{0, 0}, {0, 0}};
        if (next < total && idle) when.it_value = (struct timespec){(time_t)due, (long)((due - (time_t)due) * 1e9)};
        timerfd_settime(timer, TFD_TIMER_ABSTIME, &when, NULL);
        struct epoll_event ready[64];
        int count = epoll_wait(poller, ready, 64, 100);
        for (int r = 0; r < count; r++) {
            if (ready[r].data.u32 == UINT32_MAX) {
                uint64_t expirations;
                (void)!read(timer, &expirations, sizeof expirations);
                continue;
            }
            connection_t *c = &connections[ready[r].data.u32];
            ssize_t n = recv(c->fd, c->buffer + c->used, BUFFER - c->used, 0);
            if (n < 0 && errno == EAGAIN) continue;
            int status = 0;
            double value = 0;
            long end = 0;
            if (n > 0) {
                c->used += (size_t)n;
                end = response_end(c->buffer, c->used, &status, &value);
            }
            if (end == 0 && n > 0) continue;
            if (!c->busy || end < 0 || n <= 0 || (size_t)end != c->used) { /* closed, broken or malformed */
                if (c->busy || n > 0) broken++; /* not a server closing an idle keep-alive connection */
                if (c->busy) {
                    outstanding--;
                    errors += c->measured;
                }
                close(c->fd); /* closing removes it from the epoll set */
                c->fd = open_connection();
                c->busy = 0;
                event = (struct epoll_event){.events = EPOLLIN, .data.u32 = ready[r].data.u32};
                epoll_ctl(poller, EPOLL_CTL_ADD, c->fd, &event);
                continue;
            }
            c->busy = 0;
            outstanding--;
            if (!c->measured) continue;
            if (status < 200 || status > 299) {
                non_2xx++;
                errors++;
                continue;
            }
            latencies[latency_count++] = (now() - c->due) * 1000;
            if (timeline)
                fprintf(timeline, "%.3f %.3f %u\n", (c->due - measured_from) * 1000, latencies[latency_count - 1],
                        ready[r].data.u32);
            if (value == value) captured[captured_count++] = value;
        }
    }
    long unanswered = 0;
    for (int i = 0; i < connection_count; i++) unanswered += connections[i].busy && connections[i].measured;
    long unsent = 0;
    for (long n = next; n < total; n++) unsent += start + n / rate >= measured_from;
    printf("{\"rate\": %g, \"seconds\": %g, \"connections\": %d, \"measured\": %ld, \"errors\": %ld, "
           "\"non_2xx\": %ld, \"broken_connections\": %ld, \"unanswered\": %ld, \"unsent\": %ld, ",
           rate, seconds, connection_count, latency_count, errors + unanswered + unsent, non_2xx, broken, unanswered,
           unsent);
    print_quantiles("latency_ms", latencies, latency_count);
    printf(", ");
    print_quantiles("captured", captured, captured_count);
    printf("}\n");
    return 0;
}
