/* kis_fdw--1.0--1.1.sql: what 1.1 adds to or changes in 1.0's SQL objects */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION kis_fdw UPDATE TO '1.1'" to load this file. \quit
