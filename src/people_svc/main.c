/* tcpops-people: the people service (see people.c, and svc.h for the runtime). */
#include "people_svc/people.h"

int main(int argc, char **argv)
{
    return svc_main(people_service(), argc, argv);
}
