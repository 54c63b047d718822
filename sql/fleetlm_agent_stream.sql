--
-- fleetlm_agent_stream: the agent engine's reply parser and compactor
-- (src/agent_stream.c), through fleetlm.compact_agent_reply.  That function
-- feeds the body in slices of 1, 2, 3, 7, 13, 31 and 64 bytes in turn, so
-- every reply below has its lines, CRLFs, SSE events and UTF-8 sequences
-- split at many places, and processes it every eleventh slice and whenever
-- the 64-byte feed reserve fills up.
--
-- The expected messages follow the AI SDK's processUIMessageStream
-- (version 5) as far as we know it.  Where we chose a representation, a
-- comment says so.
--
-- replies by name, and a shorthand to run one
CREATE TEMP TABLE reply (name text PRIMARY KEY, body text NOT NULL,
                         protocol text NOT NULL DEFAULT 'fleetlm');
CREATE FUNCTION pg_temp.run(reply_name text, protocol text DEFAULT 'fleetlm',
                            max_line integer DEFAULT 1048576,
                            max_bytes integer DEFAULT 16777216)
RETURNS TABLE(message jsonb, complete boolean, aborted boolean, error text,
              chunks integer)
LANGUAGE sql AS $$
    SELECT r.* FROM reply,
           fleetlm.compact_agent_reply(reply.body, protocol, max_line, max_bytes) r
     WHERE reply.name = reply_name
$$;
-- a JSONL reply as SSE: one event per line, then [DONE]
CREATE FUNCTION pg_temp.sse(jsonl text) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg('data: ' || line || E'\n\n', '' ORDER BY n) || E'data: [DONE]\n\n'
      FROM regexp_split_to_table(jsonl, E'\n') WITH ORDINALITY AS t(line, n)
     WHERE line <> ''
$$;

-------------------------------------------------------------------------
-- A full UI message stream: two steps; reasoning, text, a tool call with
-- streamed input and its output, sources, a file, data parts (one
-- replaced by id, one without id, one transient), metadata from start,
-- message-metadata and finish, merged deeply.
-------------------------------------------------------------------------
INSERT INTO reply VALUES ('ui', $$
{"type":"start","messageId":"msg-ui-1","messageMetadata":{"model":"m-1","usage":{"in":10}}}
{"type":"start-step"}
{"type":"reasoning-start","id":"r1"}
{"type":"reasoning-delta","id":"r1","delta":"The user wants "}
{"type":"reasoning-delta","id":"r1","delta":"the weather."}
{"type":"reasoning-end","id":"r1"}
{"type":"text-start","id":"t1"}
{"type":"text-delta","id":"t1","delta":"Let me "}
{"type":"text-delta","id":"t1","delta":"check — ☀️ "}
{"type":"text-end","id":"t1"}
{"type":"tool-input-start","toolCallId":"call-1","toolName":"weather"}
{"type":"tool-input-delta","toolCallId":"call-1","inputTextDelta":"{\"city\":"}
{"type":"tool-input-delta","toolCallId":"call-1","inputTextDelta":"\"Zürich\"}"}
{"type":"tool-input-available","toolCallId":"call-1","toolName":"weather","input":{"city":"Zürich"}}
{"type":"tool-output-available","toolCallId":"call-1","output":{"temp":21,"sky":"clear"}}
{"type":"finish-step"}
{"type":"start-step"}
{"type":"source-url","sourceId":"s1","url":"https://example.com/wx","title":"Weather","extra":"dropped, as the AI SDK does"}
{"type":"source-document","sourceId":"s2","mediaType":"application/pdf","title":"Report","filename":"r.pdf"}
{"type":"file","url":"https://example.com/map.png","mediaType":"image/png"}
{"type":"data-progress","id":"p1","data":{"pct":10}}
{"type":"data-progress","id":"p1","data":{"pct":100}}
{"type":"data-note","data":"no id: every one is kept"}
{"type":"data-status","id":"s","data":"typing","transient":true}
{"type":"message-metadata","messageMetadata":{"usage":{"out":42},"latency_ms":120}}
{"type":"text-start","id":"t2"}
{"type":"text-delta","id":"t2","delta":"It is 21 °C and clear in Zürich."}
{"type":"text-end","id":"t2"}
{"type":"finish-step"}
{"type":"finish","finishReason":"stop","messageMetadata":{"done":true}}
$$);
INSERT INTO reply SELECT 'ui-sse', pg_temp.sse(body) FROM reply WHERE name = 'ui';
\x on
-- JSONL.  Text and reasoning parts carry "state" (streaming/done) as AI SDK
-- 5 does; the transient data part is delivered (counted) but not stored;
-- data-progress p1 keeps its place and takes the later data.
SELECT jsonb_pretty(message) AS message, complete, aborted, error, chunks
  FROM pg_temp.run('ui');
\x off
-- SSE of the same chunks, ended by [DONE]: the same message
SELECT a.message = b.message AS same_message, b.complete, b.aborted, b.error,
       a.chunks AS jsonl_chunks, b.chunks AS sse_chunks
  FROM pg_temp.run('ui') a, pg_temp.run('ui-sse') b;
-- every prefix of the SSE reply parses without error; only the whole one,
-- with finish, is complete (a cut inside a chunk is a truncation)
SELECT count(*) AS prefixes,
       count(*) FILTER (WHERE r.error IS NOT NULL) AS with_error,
       count(*) FILTER (WHERE r.complete) AS complete
  FROM reply, generate_series(1, length(reply.body)) AS n,
       fleetlm.compact_agent_reply(left(reply.body, n)) r
 WHERE reply.name = 'ui-sse';

-------------------------------------------------------------------------
-- SSE details: CRLF, comments, event:/id:/retry: fields, data without the
-- space, a JSON object spread over several data: lines (joined with LF),
-- blank data, and bytes after [DONE] (not read).
-------------------------------------------------------------------------
INSERT INTO reply VALUES ('sse-crlf', replace($$: keep-alive comment
event: message
id: 1
retry: 1000
data: {"type":"start","messageId":"m-crlf"}

:another comment
data:{"type":"text-start","id":"a"}

data: {"type":"text-delta",
data:  "id":"a",
data:  "delta":"multi-line data"}

data:

data: {"type":"text-end","id":"a"}
data

data: {"type":"finish"}

data: [DONE]

data: {"type":"text-delta","id":"a","delta":"after DONE: not read"}
this is not even SSE
$$, E'\n', E'\r\n'));
SELECT message, complete, aborted, error, chunks FROM pg_temp.run('sse-crlf');
-- JSONL with CRLF, blank and whitespace lines, and a byte order mark
INSERT INTO reply SELECT 'jsonl-crlf', convert_from('\xefbbbf'::bytea, 'UTF8') || replace($$
{"type":"text-start","id":"a"}
   
{"type":"text-delta","id":"a","delta":"crlf"}
{"type":"text-end","id":"a"}

{"type":"finish"}$$, E'\n', E'\r\n');
SELECT message - 'id' AS message, complete, error, chunks FROM pg_temp.run('jsonl-crlf');

-------------------------------------------------------------------------
-- UTF-8 split everywhere: four-, three- and two-byte sequences, through
-- both framings.
-------------------------------------------------------------------------
INSERT INTO reply VALUES ('utf8',
    '{"type":"text-start","id":"u"}' || E'\n' ||
    '{"type":"text-delta","id":"u","delta":"' || repeat('😀日本語ü', 25) || '"}' || E'\n' ||
    '{"type":"text-delta","id":"u","delta":"🎉"}' || E'\n' ||
    '{"type":"text-end","id":"u"}' || E'\n' ||
    '{"type":"finish"}' || E'\n');
INSERT INTO reply SELECT 'utf8-sse', pg_temp.sse(body) FROM reply WHERE name = 'utf8';
SELECT r.message->'parts'->0->>'text' = repeat('😀日本語ü', 25) || '🎉' AS text_intact,
       length(r.message->'parts'->0->>'text') AS characters, r.complete, r.error
  FROM reply, fleetlm.compact_agent_reply(reply.body) r
 WHERE reply.name IN ('utf8', 'utf8-sse') ORDER BY reply.name;

-------------------------------------------------------------------------
-- How replies end
-------------------------------------------------------------------------
-- no finish: not complete, no error, the text part still streaming; no
-- start either, so the id is made from a hash of the body (deterministic:
-- the function is IMMUTABLE)
INSERT INTO reply VALUES ('no-finish', $$
{"type":"text-start","id":"t"}
{"type":"text-delta","id":"t","delta":"half an ans"}
$$);
SELECT message - 'id' AS message, complete, aborted, error, chunks FROM pg_temp.run('no-finish');
SELECT a.message->>'id' ~ '^msg-[0-9a-f]{16}$' AS hashed_id, a.message->>'id' = b.message->>'id' AS same_id
  FROM pg_temp.run('no-finish') a, pg_temp.run('no-finish') b;
-- cut in the middle of the last chunk: that chunk is dropped as a
-- truncation, not reported as malformed (a retry should fix it)
INSERT INTO reply VALUES ('cut', '{"type":"text-start","id":"t"}' || E'\n' ||
                                 '{"type":"text-delta","id":"t","delta":"whole"}' || E'\n' ||
                                 '{"type":"text-delta","id":"t","del');
SELECT message->'parts' AS parts, complete, error, chunks FROM pg_temp.run('cut');
-- ... but a last line without LF that is whole is used
INSERT INTO reply VALUES ('no-lf', '{"type":"start","messageId":"m"}' || E'\n' || '{"type":"finish"}');
SELECT message, complete, error, chunks FROM pg_temp.run('no-lf');
-- SSE: the last event without its blank line, and a [DONE]-less end
INSERT INTO reply VALUES ('sse-no-blank', E'data: {"type":"start","messageId":"m"}\n\ndata: {"type":"finish"}');
SELECT message, complete, error, chunks FROM pg_temp.run('sse-no-blank');
-- abort: complete and aborted
INSERT INTO reply VALUES ('abort', $$
{"type":"start","messageId":"m-abort"}
{"type":"text-start","id":"t"}
{"type":"text-delta","id":"t","delta":"stopp"}
{"type":"abort"}
$$);
SELECT message, complete, aborted, error, chunks FROM pg_temp.run('abort');
-- an error chunk: the agent's error text; the stream goes on being read
-- (the AI SDK reports it and carries on), so a finish after it still
-- counts, and only the first error is kept
INSERT INTO reply VALUES ('error-chunk', $$
{"type":"start","messageId":"m-err"}
{"type":"text-start","id":"t"}
{"type":"text-delta","id":"t","delta":"partial"}
{"type":"error","errorText":"model overloaded"}
{"type":"error","errorText":"second error"}
{"type":"finish"}
$$);
SELECT message, complete, aborted, error, chunks FROM pg_temp.run('error-chunk');

-------------------------------------------------------------------------
-- Malformed replies: an error with a message, never a crash; the message
-- holds what came before; nothing after is read.
-------------------------------------------------------------------------
INSERT INTO reply VALUES
    ('bad-json', E'{"type":"start","messageId":"m"}\n{"type":"text-start",id:"t"}\n{"type":"finish"}\n'),
    ('bad-json-sse', E'data: {"type":"start","messageId":"m"}\n\ndata: {"type":\n\ndata: [DONE]\n\n'),
    ('not-object', E'[1, 2]\n'),
    ('sse-string', E'data: "just a string"\n\n'),
    ('no-type', E'{"kind":"text"}\n'),
    ('type-number', E'{"type":7}\n'),
    ('delta-no-start', E'{"type":"text-delta","id":"nope","delta":"x"}\n'),
    ('delta-after-end', E'{"type":"text-start","id":"t"}\n{"type":"text-end","id":"t"}\n{"type":"text-delta","id":"t","delta":"late"}\n'),
    ('delta-after-step', E'{"type":"reasoning-start","id":"r"}\n{"type":"finish-step"}\n{"type":"reasoning-delta","id":"r","delta":"late"}\n'),
    ('delta-not-string', E'{"type":"text-start","id":"t"}\n{"type":"text-delta","id":"t","delta":42}\n'),
    ('tool-delta-no-start', E'{"type":"tool-input-available","toolCallId":"c","toolName":"f","input":{}}\n{"type":"tool-input-delta","toolCallId":"c","inputTextDelta":"{"}\n'),
    ('tool-output-unknown', E'{"type":"tool-output-available","toolCallId":"ghost","output":1}\n'),
    ('tool-no-name', E'{"type":"tool-input-start","toolCallId":"c"}\n'),
    ('bool-not-bool', E'{"type":"data-x","data":1,"transient":"yes"}\n'),
    ('error-no-text', E'{"type":"error","message":"wrong field"}\n'),
    ('source-no-url', E'{"type":"source-url","sourceId":"s"}\n'),
    ('nul-escape', E'{"type":"text-start","id":"t"}\n{"type":"text-delta","id":"t","delta":"\\u0000"}\n'),
    ('huge-number', E'{"type":"data-x","data":1e1000000}\n'),
    ('deep', '{"type":"data-x","data":' || repeat('[', 100000) || repeat(']', 100000) || E'}\n'),
    ('long-id', E'{"type":"text-delta","id":"' || repeat('é', 80) || E'","delta":"x"}\n');
SELECT name, r.error, r.chunks, jsonb_array_length(r.message->'parts') AS parts, r.complete
  FROM reply, fleetlm.compact_agent_reply(reply.body) r
 WHERE name IN ('bad-json', 'bad-json-sse', 'not-object', 'sse-string', 'no-type',
                'type-number', 'delta-no-start', 'delta-after-end', 'delta-after-step',
                'delta-not-string', 'tool-delta-no-start', 'tool-output-unknown',
                'tool-no-name', 'bool-not-bool', 'error-no-text', 'source-no-url',
                'nul-escape', 'huge-number', 'deep', 'long-id')
 ORDER BY name;

-------------------------------------------------------------------------
-- Caps: max_line (without the LF or CRLF) and max_bytes
-------------------------------------------------------------------------
-- '{"type":"data-x","data":"' || repeat('a', n) || '"}' is 27 + n bytes
CREATE FUNCTION pg_temp.line(n integer) RETURNS text LANGUAGE sql
    AS $$ SELECT '{"type":"data-x","data":"' || repeat('a', n - 27) || '"}' $$;
SELECT octet_length(pg_temp.line(50)) AS line_50, octet_length(pg_temp.line(51)) AS line_51;
INSERT INTO reply VALUES
    -- the second line is 51 bytes
    ('long-line', E'{"type":"start","messageId":"m"}\n' || pg_temp.line(51) || E'\n{"type":"finish"}\n'),
    -- 50 bytes each: the cap; the CR of a CRLF does not count
    ('line-at-cap', pg_temp.line(50) || E'\r\n' || pg_temp.line(50) || E'\n{"type":"finish"}\n'),
    -- an incomplete last line over the cap
    ('long-tail', E'{"type":"start","messageId":"m"}\n' || repeat('x', 51)),
    -- an SSE line over the cap after [DONE]: never read
    ('long-after-done', E'data: [DONE]\n\n' || repeat('x', 100) || E'\n');
SELECT name, r.message - 'id' AS message, r.complete, r.error, r.chunks
  FROM reply, fleetlm.compact_agent_reply(reply.body, max_line => 50) r
 WHERE name IN ('long-line', 'line-at-cap', 'long-tail', 'long-after-done')
 ORDER BY name;
-- max_bytes: the reply is cut off there; what came before is compacted
SELECT length(convert_to(body, 'UTF8')) > 1000 AS over_1000 FROM reply WHERE name = 'ui';
SELECT jsonb_array_length(message->'parts') > 0 AS some_parts, complete, error, chunks > 0 AS some_chunks
  FROM pg_temp.run('ui', max_bytes => 1000);
SELECT complete, error FROM pg_temp.run('ui', max_bytes => (SELECT length(convert_to(body, 'UTF8')) FROM reply WHERE name = 'ui'));
SELECT complete, error FROM pg_temp.run('ui', max_bytes => (SELECT length(convert_to(body, 'UTF8')) - 1 FROM reply WHERE name = 'ui'));

-------------------------------------------------------------------------
-- Unknown chunk types are kept as parts of their own, in order (the AI
-- SDK would reject them; issue 11 says forward).  Also: text-start with an
-- id used before starts a new part; parts without fields we know.
-------------------------------------------------------------------------
INSERT INTO reply VALUES ('unknown', $$
{"type":"text-start","id":"t"}
{"type":"text-delta","id":"t","delta":"one"}
{"type":"custom-thing","payload":{"a":[1,2]}}
{"type":"text-end","id":"t"}
{"type":"tool-approval-request","approvalId":"a1","toolCallId":"c1"}
{"type":"text-start","id":"t"}
{"type":"text-delta","id":"t","delta":"two"}
{"type":"text-end","id":"t"}
{"type":"finish"}
$$);
SELECT jsonb_pretty(message->'parts') AS parts, complete, error, chunks FROM pg_temp.run('unknown');

-------------------------------------------------------------------------
-- Tool states: input-streaming (input only once the text is whole JSON:
-- we do not repair partial JSON as the AI SDK does), output-error,
-- tool-input-error (rawInput), dynamic tools, providerExecuted,
-- preliminary output, callProviderMetadata, providerMetadata on text.
-------------------------------------------------------------------------
INSERT INTO reply VALUES ('tools', $$
{"type":"tool-input-start","toolCallId":"c1","toolName":"search"}
{"type":"tool-input-delta","toolCallId":"c1","inputTextDelta":"{\"q\":\"pg"}
{"type":"tool-input-start","toolCallId":"c2","toolName":"search"}
{"type":"tool-input-delta","toolCallId":"c2","inputTextDelta":"{\"q\":\"sql\"}"}
{"type":"tool-input-available","toolCallId":"c3","toolName":"fetch","input":{"url":"u"},"providerExecuted":true,"providerMetadata":{"p":{"x":1}}}
{"type":"tool-output-error","toolCallId":"c3","errorText":"404"}
{"type":"tool-input-error","toolCallId":"c4","toolName":"calc","input":"1+","errorText":"bad input"}
{"type":"tool-input-start","toolCallId":"c5","toolName":"mcp_lookup","dynamic":true}
{"type":"tool-input-available","toolCallId":"c5","toolName":"mcp_lookup","input":{"k":1},"dynamic":true}
{"type":"tool-output-available","toolCallId":"c5","output":{"partial":true},"preliminary":true,"dynamic":true}
{"type":"tool-output-available","toolCallId":"c5","output":null,"dynamic":true}
{"type":"text-start","id":"t","providerMetadata":{"openai":{"itemId":"i1"}}}
{"type":"text-end","id":"t"}
$$);
SELECT jsonb_pretty(message->'parts') AS parts, complete, error, chunks FROM pg_temp.run('tools');

-------------------------------------------------------------------------
-- Metadata: merged deeply (objects key by key, anything else replaced);
-- null metadata ignored
-------------------------------------------------------------------------
INSERT INTO reply VALUES ('metadata', $$
{"type":"start","messageMetadata":{"a":{"b":1,"c":[1,2]},"keep":"k"}}
{"type":"message-metadata","messageMetadata":{"a":{"c":[3],"d":{"e":true}}}}
{"type":"message-metadata","messageMetadata":null}
{"type":"finish","messageMetadata":{"a":{"b":"replaced"},"keep":null}}
$$);
SELECT message->'metadata' AS metadata, complete, chunks FROM pg_temp.run('metadata');

-------------------------------------------------------------------------
-- Protocol openai: chat.completion.chunk SSE.  Translated to UI chunks
-- (start with the completion id as messageId, reasoning-*, text-*,
-- tool-input-*, finish, message-metadata for usage) and compacted the
-- same way; "chunks" counts the translated chunks.  finish_reason maps to
-- the AI SDK's words (tool_calls -> tool-calls); no step-start part is
-- made up.
-------------------------------------------------------------------------
INSERT INTO reply VALUES ('openai', $$
: OPENROUTER PROCESSING

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}

data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"reasoning_content":"Need the "},"finish_reason":null}]}

data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"reasoning_content":"weather."},"finish_reason":null}]}

data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"Checking "},"finish_reason":null}]}

data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"Zürich and Genève…"},"finish_reason":null}]}

data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"weather","arguments":""}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"weather","arguments":"{\"city\":"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Zürich\"}"}},{"index":1,"function":{"arguments":"\"Genève\"}"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":2,"id":"call_c","type":"function","function":{"name":"now","arguments":""}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}

data: {"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}}

data: [DONE]

$$);
\x on
SELECT jsonb_pretty(message) AS message, complete, aborted, error, chunks
  FROM pg_temp.run('openai', 'openai');
\x off
-- the same reply as JSONL (no SSE framing) gives the same message
INSERT INTO reply
SELECT 'openai-jsonl', string_agg(substr(line, 7), E'\n' ORDER BY n), 'openai'
  FROM reply, regexp_split_to_table(body, E'\n') WITH ORDINALITY AS t(line, n)
 WHERE name = 'openai' AND line LIKE 'data: {%';
SELECT a.message = b.message AS same_message, b.complete, b.error, b.chunks
  FROM pg_temp.run('openai', 'openai') a, pg_temp.run('openai-jsonl', 'openai') b;
-- tool arguments that are not JSON: a tool-input-error (rawInput), as the
-- AI SDK does for unparsable input; content only, stop; a tool call
-- without an id gets call_<index>
INSERT INTO reply VALUES ('openai-bad-args', $$
data: {"id":"c2","choices":[{"index":0,"delta":{"content":"Hi"}}]}

data: {"id":"c2","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"{not json"}}]}}]}

data: {"id":"c2","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

data: [DONE]
$$);
SELECT jsonb_pretty(message) AS message, complete, error, chunks FROM pg_temp.run('openai-bad-args', 'openai');
-- a mid-stream error object: the error, with what came before; no
-- finish_reason, so not complete
INSERT INTO reply VALUES ('openai-error', $$
data: {"id":"c3","choices":[{"index":0,"delta":{"content":"Half"}}]}

data: {"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}

data: [DONE]
$$);
SELECT message, complete, error, chunks FROM pg_temp.run('openai-error', 'openai');
-- error objects that are a string or have no message
SELECT r.error FROM (VALUES (E'data: {"error":"plain"}\n\n'),
                            (E'data: {"error":{"code":500}}\n\n')) AS v(body),
                    fleetlm.compact_agent_reply(v.body, 'openai') r;
-- [DONE] without a finish_reason: not complete; length maps to length
SELECT r.complete, r.error, r.message->'parts' AS parts
  FROM (VALUES (E'data: {"id":"c4","choices":[{"delta":{"content":"cut"}}]}\n\ndata: [DONE]\n\n'),
               (E'data: {"id":"c5","choices":[{"delta":{"content":"long"},"finish_reason":"length"}]}\n\n')) AS v(body),
       fleetlm.compact_agent_reply(v.body, 'openai') r;
-- malformed openai chunks: bad JSON, not an object, bad tool call index
SELECT r.error FROM (VALUES (E'data: {"choices":[{"delta":{"content":"x"}]}\n\n'),
                            (E'data: 42\n\n'),
                            (E'data: {"id":"c6","choices":[{"delta":{"tool_calls":[{"index":-1}]}}]}\n\n'),
                            (E'data: {"id":"c6","choices":[{"delta":{"tool_calls":[{"index":"0"}]}}]}\n\n')) AS v(body),
                    fleetlm.compact_agent_reply(v.body, 'openai') r;

-------------------------------------------------------------------------
-- The buffer as small as the longest line allows (max_line = that line):
-- feed then often finds it full and the function processes before feeding
-- on.  Every reply gives the same result as with the default caps.
-- And every prefix of the openai reply, too, is read without error.
-------------------------------------------------------------------------
UPDATE reply SET protocol = 'openai' WHERE name LIKE 'openai%';
SELECT count(*) AS replies,
       count(*) FILTER (WHERE (a.*) IS DISTINCT FROM (b.*)) AS different
  FROM reply,
       LATERAL (SELECT max(octet_length(l)) AS longest
                  FROM regexp_split_to_table(reply.body, E'\n') AS l) AS m,
       fleetlm.compact_agent_reply(reply.body, reply.protocol) a,
       fleetlm.compact_agent_reply(reply.body, reply.protocol, greatest(m.longest, 1)) b;
SELECT count(*) AS prefixes,
       count(*) FILTER (WHERE r.error IS NOT NULL) AS with_error,
       count(*) FILTER (WHERE r.complete) AS complete
  FROM reply, generate_series(1, length(reply.body)) AS n,
       fleetlm.compact_agent_reply(left(reply.body, n), 'openai') r
 WHERE reply.name = 'openai';

-------------------------------------------------------------------------
-- Arguments and privileges
-------------------------------------------------------------------------
SELECT t.call, try(t.call) AS result
  FROM (VALUES
    ($$SELECT fleetlm.compact_agent_reply('', 'anthropic')$$),
    ($$SELECT fleetlm.compact_agent_reply('', '')$$),
    ($$SELECT fleetlm.compact_agent_reply(NULL)$$),
    ($$SELECT fleetlm.compact_agent_reply('', NULL)$$),
    ($$SELECT fleetlm.compact_agent_reply('', max_line => NULL)$$),
    ($$SELECT fleetlm.compact_agent_reply('', max_bytes => NULL)$$),
    ($$SELECT fleetlm.compact_agent_reply('', max_line => 0)$$),
    ($$SELECT fleetlm.compact_agent_reply('', max_line => 67108865)$$),
    ($$SELECT fleetlm.compact_agent_reply('', max_bytes => 0)$$),
    ($$SELECT fleetlm.compact_agent_reply('', max_bytes => -5)$$),
    ($$SELECT fleetlm.compact_agent_reply('', 'openai', 67108864, 1)$$)
  ) AS t(call);
-- an empty reply: an empty message, not complete
SELECT message - 'id' AS message, complete, aborted, error, chunks FROM fleetlm.compact_agent_reply('');
SELECT p.provolatile, p.proparallel, p.proisstrict,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute,
       has_function_privilege('fleetlm_reader', p.oid, 'EXECUTE') AS reader_execute,
       has_function_privilege('fleetlm_writer', p.oid, 'EXECUTE') AS writer_execute
  FROM pg_proc p WHERE p.oid = 'fleetlm.compact_agent_reply(text,text,integer,integer)'::regprocedure;
SET ROLE fleetlm_reader;
SELECT message, complete FROM fleetlm.compact_agent_reply(E'{"type":"start","messageId":"as-reader"}\n{"type":"finish"}\n');
RESET ROLE;
-- several messages in one reply (a start after a finish): one row each,
-- in order; the other columns describe the whole reply
SELECT message, complete, chunks FROM fleetlm.compact_agent_reply(
E'{"type":"start","messageId":"m-a"}\n{"type":"text-start","id":"t"}\n{"type":"text-delta","id":"t","delta":"one"}\n{"type":"text-end","id":"t"}\n{"type":"finish"}\n'
 '{"type":"start"}\n{"type":"text-start","id":"t"}\n{"type":"text-delta","id":"t","delta":"two"}\n{"type":"text-end","id":"t"}\n{"type":"finish"}\n');
