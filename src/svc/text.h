/* The text-mode bridge (private to src/svc): a connection whose first byte
 * is SVC_TEXT_FIRST_BYTE speaks one JSON object per line, e.g.
 * {"cmd":"people.Create","name":"ann"}; each line becomes the method's
 * protobuf request, runs the handler as a binary call would, and its answer
 * comes back as one JSON line ({"error":...,"code":...} when it failed).
 * "status", "ping" and "help" are commands of their own.
 *
 * Calls: runtime (the method table, the counters), util pbjson/jsondepth. */
#ifndef TCPOPS_SVC_TEXT_H
#define TCPOPS_SVC_TEXT_H

#include <stddef.h>

/* What a text-mode connection starts with: a JSON object. */
#define SVC_TEXT_FIRST_BYTE '{'

/* An rpc_text_fn: one line (no newline, not NUL-terminated) in; a malloc'd
 * reply line (no newline) out, never NULL (the caller frees it).
 * thread_state is an svc_thread, user the svc. Any thread with its own
 * thread_state; no lock held or taken but the handlers'. */
char *svc_text_line(void *thread_state, void *user, const char *line, size_t len);

/* The line sent before a text connection is closed for why ("line too
 * long"): {"error":"<why>"}, malloc'd, without newline (caller frees); NULL
 * when out of memory. user is the svc (unused). Any thread. */
char *svc_text_error(void *user, const char *why);

#endif
