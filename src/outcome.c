/*-------------------------------------------------------------------------
 *
 * outcome.c
 *	  The retry rules, in one place: what the fetch engine does with a
 *	  request after one answer (its outcome, response.c), and how long a
 *	  retry waits.  The fuzz harness (fuzz/fuzz_kis.c) follows the same
 *	  rules by calling these functions.
 *
 * A passing failure (network, 5xx, EGW00201 and the like) is sent again
 * after an exponential back-off with jitter, up to max_retries times; then
 * it is the key's failure.  A rejected token is replaced once for everyone
 * and the request resent without charge; a second rejection, or refused
 * credentials, ends the scan.  docs/tokens-and-rate.md has the reasons.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "compat.h"
#include "outcome.h"
#include "response.h"

#define KIS_BACKOFF_BASE_MS		200
#define KIS_BACKOFF_CAP_MS		5000

/*
 * What to do after an answer with this outcome: attempts is how many times
 * the request was sent (this one included), token_rejections how many of
 * its answers rejected the token (this one included).
 */
KisAction
kis_outcome_action(KisOutcome outcome, int attempts, int max_retries,
				   int token_rejections)
{
	switch (outcome)
	{
		case KIS_OUTCOME_OK:
		case KIS_OUTCOME_FAILED:
			return KIS_ACTION_DONE;
		case KIS_OUTCOME_RETRY:
		case KIS_OUTCOME_RETRY_RATE:
			return attempts > max_retries ? KIS_ACTION_GIVE_UP : KIS_ACTION_RETRY;
		case KIS_OUTCOME_TOKEN:
			return token_rejections > 1 ? KIS_ACTION_TOKEN_FAILED : KIS_ACTION_RENEW_TOKEN;
		case KIS_OUTCOME_FATAL:
			break;
	}
	return KIS_ACTION_FAIL;
}

/*
 * Retries exhausted (KIS_ACTION_GIVE_UP): the answer becomes the key's
 * failure, saying so, in the current memory context.
 */
void
kis_outcome_give_up(KisResponse *resp, int attempts)
{
	char	   *problem = psprintf("gave up after %d attempts, last answer %s",
								   attempts, kis_response_summary(resp));

	resp->outcome = KIS_OUTCOME_FAILED;
	resp->problem = problem;
	resp->msg_cd = NULL;
}

/* Exponential backoff with jitter: half to all of base * 2^(n-1), capped */
int64
kis_backoff_us(int attempts)
{
	double		ms = KIS_BACKOFF_BASE_MS * pow(2.0, Max(attempts - 1, 0));

	ms = Min(ms, KIS_BACKOFF_CAP_MS);
	return (int64) (ms * (0.5 + 0.5 * kis_random_fraction()) * 1000.0);
}
