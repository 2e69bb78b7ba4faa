// SPDX-License-Identifier: MIT
/*
 * Control-socket messages (AF_UNIX, SOCK_SEQPACKET: one send, one message),
 * optionally carrying file descriptors (SCM_RIGHTS). Shared by gateway,
 * agents and admin clients. Received fds are always CLOEXEC.
 */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw.h"

#define MAX_FDS 4

void pbus__msg_hdr_init(struct pbus_msg_hdr *h, uint16_t type, uint32_t len)
{
	h->magic = PBUS_MAGIC;
	h->type = type;
	h->proto = PBUS_PROTO_VERSION;
	h->abi = PBUS_ABI_VERSION;
	h->len = len;
}

int pbus__msg_hdr_check(const struct pbus_msg_hdr *h, size_t got)
{
	if (got < sizeof(*h) || h->magic != PBUS_MAGIC)
		return -EPROTO;
	if (h->proto != PBUS_PROTO_VERSION || h->abi != PBUS_ABI_VERSION)
		return -EPROTO;
	if (h->len != got)
		return -EPROTO;
	return 0;
}

int pbus__ctl_send(int fd, const void *msg, size_t len, const int *fds,
		   int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (nfds > MAX_FDS)
		return -EINVAL;
	if (nfds > 0) {
		struct cmsghdr *c;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

ssize_t pbus__ctl_recv(int fd, void *buf, size_t len, int *fds, int *nfds,
		       int maxfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *c;
	ssize_t n;
	int got = 0;

	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		int k, *p;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		p = (int *)CMSG_DATA(c);
		for (int i = 0; i < k; i++) {
			if (fds && got < maxfds)
				fds[got++] = p[i];
			else
				close(p[i]); /* unexpected: never leak */
		}
	}
	if (nfds)
		*nfds = got;
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		for (int i = 0; i < got; i++)
			close(fds[i]);
		if (nfds)
			*nfds = 0;
		return -EMSGSIZE;
	}
	return n;
}
