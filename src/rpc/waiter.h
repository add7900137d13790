/* A waiter: sleep on a 32-bit word until another thread changes it and
 * wakes it. The one place the project calls futex(2); callers see a word,
 * a value to sleep on and a deadline.
 *
 * The rule that makes it lossless: the sleeper reads the word, decides to
 * sleep on the value it read, and sleeps only while the word still holds it;
 * the waker changes the word first, then wakes. A change between the read
 * and the sleep makes the sleep return at once. */
#ifndef TCPOPS_RPC_WAITER_H
#define TCPOPS_RPC_WAITER_H

#include <stdatomic.h>
#include <stdint.h>

/* Sleeps while *word == expect, until until_ms (rpc_now_ms clock; 0 waits
 * without limit). Returns 0 when woken or when the word had already
 * changed (wakes may be spurious: callers look at the word again), or
 * -ETIMEDOUT once until_ms has passed. Any thread, no lock held. */
int rpc_waiter_wait(_Atomic uint32_t *word, uint32_t expect, int64_t until_ms);

/* Wakes up to n threads sleeping on word (INT32_MAX: all). Change the word
 * before calling. Any thread; may be called with a lock held. */
void rpc_waiter_wake(_Atomic uint32_t *word, int n);

#endif
