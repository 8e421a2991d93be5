/*-------------------------------------------------------------------------
 *
 * text.h
 *	  KIS text (UTF-8) in the database encoding (text.c).
 *
 * src/text.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_TEXT_H
#define KIS_TEXT_H

extern char *kis_server_text(const char *utf8);
extern char *kis_server_message(const char *utf8);

#endif							/* KIS_TEXT_H */
