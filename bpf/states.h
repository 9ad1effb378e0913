/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#ifndef HCK_STATES_H
#define HCK_STATES_H

/* The six closing states hck-bpf tracks and may destroy. */
static __always_inline bool closing(int state)
{
	switch (state) {
	case TCP_CLOSE_WAIT:
	case TCP_FIN_WAIT1:
	case TCP_FIN_WAIT2:
	case TCP_CLOSING:
	case TCP_LAST_ACK:
	case TCP_TIME_WAIT:
		return true;
	}
	return false;
}

#endif /* HCK_STATES_H */
