// SPDX-License-Identifier: GPL-2.0
/*
 * ivnet-qstats: what netdev netlink (generic netlink family "netdev") says of an interface:
 * its statistics (qstats-get, device scope and queue scope), its queues with the NAPI
 * context serving each (queue-get), and those NAPI contexts with their interrupt (napi-get).
 * For the tests of per-queue statistics; busybox has no netlink client, and the guest has no
 * Python for the kernel's ynl.
 *
 *   ivnet-qstats IFACE
 *
 * prints one line per object, `key=value` pairs separated by spaces:
 *   dev rx-packets=... rx-bytes=... tx-packets=...        (device totals)
 *   queue-stats rx 0 rx-packets=...                       (per queue, only while up)
 *   queue rx 0 napi-id=8193                               (only while up)
 *   napi 8193 irq=25                                      (irq=-1: none)
 * Exit status 0 if the family answered, 1 on errors (printed), 2 on usage.
 *
 * The command and attribute numbers are those of include/uapi/linux/netdev.h (6.12), a
 * stable ABI; the build host's headers predate some of them.
 */
#include <errno.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
	CMD_QUEUE_GET = 10,
	CMD_NAPI_GET = 11,
	CMD_QSTATS_GET = 12,
};
enum { A_NAPI_IFINDEX = 1, A_NAPI_ID, A_NAPI_IRQ };
enum { A_QUEUE_ID = 1, A_QUEUE_IFINDEX, A_QUEUE_TYPE, A_QUEUE_NAPI_ID };
enum { A_QSTATS_IFINDEX = 1, A_QSTATS_QUEUE_TYPE, A_QSTATS_QUEUE_ID, A_QSTATS_SCOPE };
#define A_QSTATS_FIRST 8
#define A_QSTATS_LAST 34
/* The names of qstats attributes A_QSTATS_FIRST..A_QSTATS_LAST, as ynl spells them. */
static const char *const qstats_names[] = {
	"rx-packets", "rx-bytes", "tx-packets", "tx-bytes", "rx-alloc-fail", "rx-hw-drops",
	"rx-hw-drop-overruns", "rx-csum-complete", "rx-csum-unnecessary", "rx-csum-none",
	"rx-csum-bad", "rx-hw-gro-packets", "rx-hw-gro-bytes", "rx-hw-gro-wire-packets",
	"rx-hw-gro-wire-bytes", "rx-hw-drop-ratelimits", "tx-hw-drops", "tx-hw-drop-errors",
	"tx-csum-none", "tx-needs-csum", "tx-hw-gso-packets", "tx-hw-gso-bytes",
	"tx-hw-gso-wire-packets", "tx-hw-gso-wire-bytes", "tx-hw-drop-ratelimits", "tx-stop",
	"tx-wake",
};

static int fd;
static uint32_t seq;

struct attrs {
	const struct nlattr *a[64];
};

static void *put_attr(struct nlmsghdr *h, uint16_t type, const void *data, uint16_t len)
{
	struct nlattr *a = (struct nlattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));

	a->nla_type = type;
	a->nla_len = NLA_HDRLEN + len;
	memcpy((char *)a + NLA_HDRLEN, data, len);
	h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + NLA_ALIGN(a->nla_len);
	return a;
}

static void parse(const struct nlmsghdr *h, struct attrs *out)
{
	const struct nlattr *a = (const struct nlattr *)((const char *)NLMSG_DATA(h) + GENL_HDRLEN);
	int left = (int)h->nlmsg_len - (int)NLMSG_LENGTH(GENL_HDRLEN);

	memset(out, 0, sizeof(*out));
	while (left >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= left) {
		uint16_t t = a->nla_type & NLA_TYPE_MASK;

		if (t < 64)
			out->a[t] = a;
		left -= NLA_ALIGN(a->nla_len);
		a = (const struct nlattr *)((const char *)a + NLA_ALIGN(a->nla_len));
	}
}

/* An unsigned attribute of 1, 2, 4 or 8 bytes (nla_put_uint uses 4 or 8). */
static int64_t uval(const struct nlattr *a)
{
	const void *p = (const char *)a + NLA_HDRLEN;
	uint64_t v = 0;

	switch (a->nla_len - NLA_HDRLEN) {
	case 1: v = *(const uint8_t *)p; break;
	case 2: v = *(const uint16_t *)p; break;
	case 4: v = *(const uint32_t *)p; break;
	case 8: memcpy(&v, p, 8); break;
	default: return -1;
	}
	return (int64_t)v;
}

/*
 * Sends the request in `req` (a dump, or a request with NLM_F_ACK) and hands every answer
 * message to `cb` until the end of the dump or the acknowledgement. Returns 0, or a negative
 * errno the kernel answered with.
 */
static int request(struct nlmsghdr *req, void (*cb)(const struct nlmsghdr *, void *), void *ctx)
{
	static char buf[65536];
	struct sockaddr_nl to = { .nl_family = AF_NETLINK };

	req->nlmsg_seq = ++seq;
	if (sendto(fd, req, req->nlmsg_len, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		return -errno;
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *h = (struct nlmsghdr *)buf;

		if (n < 0)
			return -errno;
		for (; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != seq)
				continue;
			if (h->nlmsg_type == NLMSG_DONE) {
				/* A dump that failed says so in its end message. */
				int e = 0;

				if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(e)))
					memcpy(&e, NLMSG_DATA(h), sizeof(e));
				return e;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);

				return e->error;
			}
			/*
			 * Not NLM_F_MULTI: the netdev family's dump answers lack it. Every request
			 * ends with NLMSG_DONE (a dump) or NLMSG_ERROR (the acknowledgement).
			 */
			cb(h, ctx);
		}
	}
}

static struct nlmsghdr *new_msg(void *buf, uint16_t family, uint8_t cmd, uint16_t flags)
{
	struct nlmsghdr *h = buf;
	struct genlmsghdr *g = NLMSG_DATA(h);

	memset(buf, 0, 256);
	h->nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN);
	h->nlmsg_type = family;
	h->nlmsg_flags = NLM_F_REQUEST | flags;
	g->cmd = cmd;
	g->version = 1;
	return h;
}

static void family_cb(const struct nlmsghdr *h, void *ctx)
{
	struct attrs at;

	parse(h, &at);
	if (at.a[CTRL_ATTR_FAMILY_ID])
		*(uint16_t *)ctx = (uint16_t)uval(at.a[CTRL_ATTR_FAMILY_ID]);
}

static void qstats_cb(const struct nlmsghdr *h, void *ctx)
{
	struct attrs at;

	(void)ctx;
	parse(h, &at);
	if (at.a[A_QSTATS_QUEUE_TYPE] && at.a[A_QSTATS_QUEUE_ID])
		printf("queue-stats %s %lld", uval(at.a[A_QSTATS_QUEUE_TYPE]) ? "tx" : "rx",
		       (long long)uval(at.a[A_QSTATS_QUEUE_ID]));
	else
		printf("dev");
	for (int t = A_QSTATS_FIRST; t <= A_QSTATS_LAST; t++)
		if (at.a[t])
			printf(" %s=%lld", qstats_names[t - A_QSTATS_FIRST], (long long)uval(at.a[t]));
	printf("\n");
}

static void queue_cb(const struct nlmsghdr *h, void *ctx)
{
	struct attrs at;

	(void)ctx;
	parse(h, &at);
	printf("queue %s %lld napi-id=%lld\n",
	       at.a[A_QUEUE_TYPE] && uval(at.a[A_QUEUE_TYPE]) ? "tx" : "rx",
	       at.a[A_QUEUE_ID] ? (long long)uval(at.a[A_QUEUE_ID]) : -1LL,
	       at.a[A_QUEUE_NAPI_ID] ? (long long)uval(at.a[A_QUEUE_NAPI_ID]) : 0LL);
}

static void napi_cb(const struct nlmsghdr *h, void *ctx)
{
	struct attrs at;
	int64_t irq = -1;

	(void)ctx;
	parse(h, &at);
	if (at.a[A_NAPI_IRQ])
		irq = (int32_t)uval(at.a[A_NAPI_IRQ]);
	printf("napi %lld irq=%lld\n", at.a[A_NAPI_ID] ? (long long)uval(at.a[A_NAPI_ID]) : -1LL,
	       (long long)irq);
}

int main(int argc, char **argv)
{
	char buf[256];
	struct nlmsghdr *h;
	uint16_t family = 0;
	uint32_t ifindex, scope = 1;
	int err;

	if (argc != 2) {
		fprintf(stderr, "usage: ivnet-qstats IFACE\n");
		return 2;
	}
	ifindex = if_nametoindex(argv[1]);
	if (!ifindex) {
		perror("ivnet-qstats: interface");
		return 1;
	}
	fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_GENERIC);
	if (fd < 0) {
		perror("ivnet-qstats: socket");
		return 1;
	}
	h = new_msg(buf, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, NLM_F_ACK);
	put_attr(h, CTRL_ATTR_FAMILY_NAME, "netdev", 7);
	err = request(h, family_cb, &family);
	if (err || !family) {
		fprintf(stderr, "ivnet-qstats: no netdev netlink family (%s)\n", strerror(-err));
		return 1;
	}
	h = new_msg(buf, family, CMD_QSTATS_GET, NLM_F_DUMP);
	put_attr(h, A_QSTATS_IFINDEX, &ifindex, 4);
	err = request(h, qstats_cb, NULL);
	if (err) {
		fprintf(stderr, "ivnet-qstats: qstats-get: %s\n", strerror(-err));
		return 1;
	}
	h = new_msg(buf, family, CMD_QSTATS_GET, NLM_F_DUMP);
	put_attr(h, A_QSTATS_IFINDEX, &ifindex, 4);
	put_attr(h, A_QSTATS_SCOPE, &scope, 4);
	err = request(h, qstats_cb, NULL);
	if (err) {
		fprintf(stderr, "ivnet-qstats: qstats-get (queues): %s\n", strerror(-err));
		return 1;
	}
	h = new_msg(buf, family, CMD_QUEUE_GET, NLM_F_DUMP);
	put_attr(h, A_QUEUE_IFINDEX, &ifindex, 4);
	err = request(h, queue_cb, NULL);
	if (err) {
		fprintf(stderr, "ivnet-qstats: queue-get: %s\n", strerror(-err));
		return 1;
	}
	h = new_msg(buf, family, CMD_NAPI_GET, NLM_F_DUMP);
	put_attr(h, A_NAPI_IFINDEX, &ifindex, 4);
	err = request(h, napi_cb, NULL);
	if (err) {
		fprintf(stderr, "ivnet-qstats: napi-get: %s\n", strerror(-err));
		return 1;
	}
	close(fd);
	return 0;
}
