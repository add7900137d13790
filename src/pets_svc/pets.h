/* The pets service: its handlers and migrations as one svc_desc, run by
 * svc_main in tcpops-pets and by svc_local in tests and fuzzers. */
#ifndef TCPOPS_PETS_H
#define TCPOPS_PETS_H

#include "svc/svc.h"

/* The service's description. Call from one thread at a time. */
const svc_desc *pets_service(void);

#endif
