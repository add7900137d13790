/* The people service: its handlers and migrations as one svc_desc, run by
 * svc_main in tcpops-people and by svc_local in tests and fuzzers. */
#ifndef TCPOPS_PEOPLE_H
#define TCPOPS_PEOPLE_H

#include "svc/svc.h"

/* The service's description. Call from one thread at a time. */
const svc_desc *people_service(void);

#endif
