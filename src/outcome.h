/*-------------------------------------------------------------------------
 *
 * outcome.h
 *	  The retry rules: what to do with a request after one answer, shared
 *	  by the fetch engine and the fuzz harness (outcome.c).
 *
 * src/outcome.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_OUTCOME_H
#define KIS_OUTCOME_H

#include "response.h"

typedef enum KisAction
{
	KIS_ACTION_DONE,			/* hand the answer over: OK, or the key's
								 * own failure */
	KIS_ACTION_RETRY,			/* send again after kis_backoff_us */
	KIS_ACTION_GIVE_UP,			/* retries exhausted: the key's failure
								 * (kis_outcome_give_up) */
	KIS_ACTION_RENEW_TOKEN,		/* replace the token, resend uncharged */
	KIS_ACTION_TOKEN_FAILED,	/* a renewed token was rejected: end the scan */
	KIS_ACTION_FAIL				/* credentials refused: end the scan */
} KisAction;

extern KisAction kis_outcome_action(KisOutcome outcome, int attempts, int max_retries,
									int token_rejections);
extern void kis_outcome_give_up(KisResponse *resp, int attempts);
extern int64 kis_backoff_us(int attempts);

#endif							/* KIS_OUTCOME_H */
