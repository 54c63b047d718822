#!/usr/bin/env perl
# test/mock_agent.pl
#
# A scriptable mock agent for fleetlm's TAP tests: an HTTP/1.1 server that
# answers the dispatcher's webhook calls the way the request's path says
# (a good streamed reply, an error status, a hang, a broken stream...) and
# logs every request it receives, so that a test can assert what was sent.
#
# Usage:
#   perl test/mock_agent.pl --port-file FILE --log FILE [--port N]
#   perl test/mock_agent.pl --help
#
# It binds 127.0.0.1 only (--port 0, the default, picks a free port),
# writes the bound port number and a newline to FILE.tmp and renames it to
# FILE (readers never see a partial file), then serves until SIGTERM or
# SIGINT and exits 0.  One process, event-driven (IO::Select, non-blocking
# sockets, timers for delays): a hung or slow request never blocks another
# connection.  HTTP/1.1 keep-alive (connection reused unless the request
# says "Connection: close" or is HTTP/1.0 without keep-alive), pipelined
# requests answered in order, request bodies by Content-Length or
# "Transfer-Encoding: chunked", "Expect: 100-continue" answered.  Streamed
# replies are "Transfer-Encoding: chunked" and every line (event) of the
# reply is one HTTP chunk written at once (TCP_NODELAY), so the client sees
# them arrive separately, delay_ms apart.
#
# Log: one JSON line per request, appended with a single syswrite as soon
# as the request is fully received (before it is answered):
#   {"t": <epoch seconds, float>, "conn": <connection number from 1>,
#    "method": "POST", "path": "/x", "query": "a=1" (or ""),
#    "headers": {<lowercased name>: <value>, ...}  (repeats joined by ", "),
#    "body": <the body parsed as JSON, else the raw string ("" if none)>}
#
# Reply text ("echo: " + T): T is derived from the last message of the
# request body.  Path /openai: messages[-1].content if it is a string, else
# its JSON.  Every other path (protocol fleetlm): messages[-1].content.text
# if it is a JSON string, else the JSON of messages[-1].content.  JSON here
# is canonical (keys sorted, no spaces); no messages at all gives T = "".
#
# Behaviour by path (the agent's webhook_path), query parameters optional:
#
#   /jsonl, /webhook  200 application/x-ndjson, UI-message-stream chunks,
#                     one JSON object per line:
#                       {"type":"start","messageId":"m-<turn>-<attempt>"}
#                       {"type":"text-start","id":"t1"}
#                       {"type":"text-delta","id":"t1","delta":"echo: "}
#                       {"type":"text-delta","id":"t1","delta":"<T>"}
#                       {"type":"text-end","id":"t1"}
#                       {"type":"finish"}
#                     (turn and attempt from the body, 0 when missing)
#                     ?delay_ms=N  wait N ms before each line (a timer)
#                     ?chunks=N    the text "echo: <T>" split into N deltas
#                                  of (nearly) equal numbers of characters;
#                                  if it has fewer than N characters, one
#                                  per character and then "." deltas up to N
#                                  (so the text gets the dots appended)
#   /slow             the same as /jsonl (an alias for delay_ms tests)
#   /sse              the same chunks as SSE: "x-vercel-ai-ui-message-stream:
#                     v1", text/event-stream, each chunk "data: <json>\n\n",
#                     a comment ": keep-alive\n\n" right after the first
#                     event, and "data: [DONE]\n\n" last; delay_ms and chunks
#                     too (the delay comes before every data event, [DONE]
#                     included, not before the comment)
#   /openai           OpenAI chat-completions streaming SSE: a chunk with
#                     delta {"role":"assistant","content":""}, content deltas
#                     ("echo: ", T; or per chunks=N), a chunk with delta {}
#                     and "finish_reason":"stop", then "data: [DONE]";
#                     every chunk {"id":"c1","object":"chat.completion.chunk",
#                     "model":"mock","choices":[{"index":0,...}]}; delay_ms
#   /status/<code>    that status (200..599) with {"error":"mock <code>"}
#                     (Content-Length); ?retry_after=N adds "Retry-After: N"
#   /fail/<n>/<code>  the first n requests for each distinct Idempotency-Key
#                     value get /status/<code> (retry_after honoured), later
#                     ones are /jsonl (delay_ms, chunks honoured).  Counted
#                     in memory per path and key (no header: key "")
#   /flaky/<n>        the first n requests per Idempotency-Key get a 200 JSONL
#                     stream start, text-start, text-delta "echo: " and then
#                     the chunked body ends normally (no text-end, no
#                     finish); later ones are /jsonl.  Counted like /fail
#   /hang             reads the request and never answers; the connection
#                     stays open until the client closes it
#   /idle             200 JSONL headers and the start line, then nothing; the
#                     connection stays open until the client closes it
#   /nofinish         200 JSONL start, text-start, both text-deltas, text-end
#                     and no finish; the chunked body ends normally
#   /close            reads the request and closes the socket, no answer
#   /malformed/<kind> 200 streams that break the protocol.  JSONL (start,
#                     text-start, the bad line, text-end, finish) for kinds
#                       notjson    a line "{not json"
#                       notobject  a line "[1,2]"
#                       badutf8    a text-delta whose JSON string holds the
#                                  raw bytes \xff\xfe
#                       longline   a text-delta whose delta is 2 MiB of "a"
#                                  (one line of 2,097,194 bytes and "\n")
#                       nodelta    {"type":"text-delta","id":"t1"}
#                       toolnoid   {"type":"tool-input-start","toolName":"x"}
#                       huge       instead of one bad line, valid text-delta
#                                  lines of 8,000 "x" each until the body
#                                  passes 20 MiB (generated as the socket
#                                  drains, never all in memory)
#                     and
#                       errorchunk JSONL start, {"type":"error",
#                                  "errorText":"boom"}, finish
#                       openai_error  SSE "data: {"error":{"message":"bad"}}"
#                                  then "data: [DONE]"
#                     another kind: 404
#   /headers          like /jsonl, but the whole text is the JSON of the
#                     request's headers (lowercased names, canonical), with
#                     no "echo: " prefix: one delta (or chunks=N)
#   /multi            one JSONL body with two complete messages back to
#                     back: start (messageId "m1"), text-start, text-delta
#                     "first", text-end, finish, then the same with "m2" and
#                     "second"
#   anything else     404 {"error":"mock 404"}
#
# A method other than POST gets 405 (with "Allow: POST") whatever the path.
# Every request is logged, whatever its answer.
#
# Examples (PORT from the port file):
#   curl -sN -X POST --data '{"messages":[{"content":{"text":"hi"}}],"turn":3,"attempt":1}' \
#        'http://127.0.0.1:PORT/sse?delay_ms=200'
#   curl -s -X POST -d '{}' http://127.0.0.1:PORT/jsonl http://127.0.0.1:PORT/jsonl
#        (both requests in the log with the same "conn")

use strict;
use warnings;

use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use Getopt::Long;
use IO::Handle;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time);

my $MAX_HEADER = 64 * 1024;			# request line and headers
my $MAX_BODY = 64 * 1024 * 1024;	# request body
my $HIGH_WATER = 256 * 1024;		# unsent output that pauses a reply
my $READ_PAUSE = 1024 * 1024;		# buffered input that pauses reading

# JSON for the wire and the log: UTF-8 bytes, sorted keys
my $J = JSON::PP->new->utf8->canonical->allow_nonref;
# JSON as a character string (texts that end up inside other JSON)
my $JC = JSON::PP->new->canonical->allow_nonref;
# The request body: anything JSON
my $JBODY = JSON::PP->new->utf8->allow_nonref;

my %REASON = (
	200 => 'OK', 201 => 'Created', 202 => 'Accepted', 204 => 'No Content',
	301 => 'Moved Permanently', 302 => 'Found', 304 => 'Not Modified',
	400 => 'Bad Request', 401 => 'Unauthorized', 403 => 'Forbidden',
	404 => 'Not Found', 405 => 'Method Not Allowed',
	408 => 'Request Timeout', 409 => 'Conflict', 410 => 'Gone',
	413 => 'Payload Too Large', 422 => 'Unprocessable Entity',
	429 => 'Too Many Requests', 431 => 'Request Header Fields Too Large',
	500 => 'Internal Server Error', 501 => 'Not Implemented',
	502 => 'Bad Gateway', 503 => 'Service Unavailable',
	504 => 'Gateway Timeout');

sub usage
{
	print <<'EOF';
Usage: perl test/mock_agent.pl --port-file FILE --log FILE [--port N]

A mock agent for fleetlm's tests: an HTTP/1.1 server on 127.0.0.1 whose
answer depends on the request path (/jsonl /webhook /slow /sse /openai
/status/<code> /fail/<n>/<code> /flaky/<n> /hang /idle /nofinish /close
/malformed/<kind> /headers /multi), with query parameters delay_ms=N,
chunks=N and retry_after=N.  It logs each request as a JSON line.

  --port N          port to bind (default 0: a free one)
  --port-file FILE  where to write the bound port (via FILE.tmp + rename)
  --log FILE        request log, appended, one JSON line per request
  --help            this text

Runs until SIGTERM or SIGINT.  See the comment at the top of the file for
the behaviours.
EOF
	exit 0;
}

my ($opt_port, $opt_port_file, $opt_log, $opt_help) = (0);
GetOptions(
	'port=i' => \$opt_port,
	'port-file=s' => \$opt_port_file,
	'log=s' => \$opt_log,
	'help|h' => \$opt_help) or die "mock_agent: bad options (see --help)\n";
usage() if $opt_help;
die "mock_agent: --port-file and --log are required (see --help)\n"
  unless defined $opt_port_file && defined $opt_log;

open(my $logfh, '>>', $opt_log) or die "mock_agent: cannot open $opt_log: $!\n";
binmode($logfh);
$logfh->autoflush(1);

my $listener = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => $opt_port,
	Proto => 'tcp',
	Listen => 128,
	ReuseAddr => 1,
	Blocking => 0) or die "mock_agent: cannot listen on 127.0.0.1:$opt_port: $@\n";
my $port = $listener->sockport;

{
	my $tmp = "$opt_port_file.tmp";
	open(my $pf, '>', $tmp) or die "mock_agent: cannot write $tmp: $!\n";
	print $pf "$port\n";
	close($pf) or die "mock_agent: cannot write $tmp: $!\n";
	rename($tmp, $opt_port_file)
	  or die "mock_agent: cannot rename $tmp to $opt_port_file: $!\n";
}

my $stop = 0;
$SIG{TERM} = sub { $stop = 1 };
$SIG{INT} = sub { $stop = 1 };
$SIG{PIPE} = 'IGNORE';

my %conns;			# fileno -> connection
my $conn_count = 0;
my @timers;			# [at, callback, cancelled]
my %attempts;		# "path\0key" -> requests seen (/fail, /flaky)

# ---------------------------------------------------------------- timers

sub add_timer
{
	my ($ms, $cb) = @_;
	my $t = [ time() + $ms / 1000, $cb, 0 ];
	push @timers, $t;
	return $t;
}

sub run_timers
{
	my $now = time();
	my @due = grep { !$_->[2] && $_->[0] <= $now } @timers;
	@timers = grep { !$_->[2] && $_->[0] > $now } @timers;
	for my $t (sort { $a->[0] <=> $b->[0] } @due)
	{
		$t->[2] = 1;
		$t->[1]->();
	}
}

sub next_timeout
{
	my $min;
	for my $t (@timers)
	{
		next if $t->[2];
		$min = $t->[0] if !defined $min || $t->[0] < $min;
	}
	return undef unless defined $min;
	my $d = $min - time();
	return $d < 0 ? 0 : $d;
}

# ----------------------------------------------------------- connections

sub close_conn
{
	my ($c) = @_;
	return if $c->{dead};
	$c->{dead} = 1;
	if ($c->{resp} && $c->{resp}{timer})
	{
		$c->{resp}{timer}[2] = 1;
	}
	delete $conns{ $c->{fd} };
	close($c->{sock});
}

# Write what we can of the output buffer now
sub flush_out
{
	my ($c) = @_;
	return if $c->{dead};
	while (length $c->{out})
	{
		my $n = syswrite($c->{sock}, $c->{out});
		if (!defined $n)
		{
			return if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
			close_conn($c);	# EPIPE, ECONNRESET...
			return;
		}
		substr($c->{out}, 0, $n, '');
	}
	close_conn($c) if $c->{closing} && !$c->{resp};
}

sub send_bytes
{
	my ($c, $bytes) = @_;
	return if $c->{dead};
	$c->{out} .= $bytes;
	flush_out($c);
}

sub status_line
{
	my ($code) = @_;
	return "HTTP/1.1 $code " . ($REASON{$code} // 'Status') . "\r\n";
}

# A complete (Content-Length) response
sub simple_response
{
	my ($c, $code, $ctype, $body, $extra) = @_;
	my $h = status_line($code);
	$h .= "Server: fleetlm-mock-agent\r\n";
	$h .= "$_\r\n" for @{ $extra // [] };
	if ($code == 204 || $code == 304)
	{
		$body = '';
	}
	else
	{
		$h .= "Content-Type: $ctype\r\n";
		$h .= 'Content-Length: ' . length($body) . "\r\n";
	}
	$h .= "Connection: close\r\n" if $c->{close_after};
	send_bytes($c, "$h\r\n$body");
	end_response($c);
}

# Start a streamed (chunked) response.  $next is called for each step and
# returns [delay_ms, bytes], 'STALL' (send nothing more, ever) or undef (the
# end of the body).  Each step's bytes become one HTTP chunk.
sub stream_response
{
	my ($c, $ctype, $next, $extra) = @_;
	my $h = status_line(200);
	$h .= "Server: fleetlm-mock-agent\r\n";
	$h .= "Content-Type: $ctype\r\n";
	$h .= "Cache-Control: no-cache\r\n";
	$h .= "$_\r\n" for @{ $extra // [] };
	$h .= "Transfer-Encoding: chunked\r\n";
	$h .= "Connection: close\r\n" if $c->{close_after};
	$c->{resp} = { next => $next };
	send_bytes($c, "$h\r\n");
	pump($c);
}

# Move a streamed response on as far as timers and the socket allow
sub pump
{
	my ($c) = @_;
	while (!$c->{dead} && (my $r = $c->{resp}))
	{
		return if $r->{timer} || $r->{stalled};
		return if length($c->{out}) >= $HIGH_WATER;	# again when writable

		my $step = delete $r->{pending};
		$step = $r->{next}->() unless $step;
		if (!defined $step)
		{
			send_bytes($c, "0\r\n\r\n");
			end_response($c);
			return;
		}
		if (!ref $step)
		{
			$r->{stalled} = 1;	# 'STALL'
			return;
		}
		my ($delay, $bytes, $waited) = @$step;
		if ($delay && $delay > 0 && !$waited)
		{
			$r->{pending} = [ $delay, $bytes, 1 ];
			$r->{timer} = add_timer($delay,
				sub { delete $r->{timer}; pump($c); });
			return;
		}
		next unless length $bytes;	# a zero-length chunk would end the body
		send_bytes($c, sprintf("%x\r\n", length $bytes) . $bytes . "\r\n");
	}
}

# The current response is complete: close, or read the next request
sub end_response
{
	my ($c) = @_;
	delete $c->{resp};
	return if $c->{dead};
	if ($c->{close_after} || $c->{eof})
	{
		$c->{closing} = 1;
		close_conn($c) unless length $c->{out};
		return;
	}
	$c->{state} = 'read';
	process_input($c);
}

# ---------------------------------------------------------- requests

# Parse a request from the input buffer: the request (hash), undef when
# incomplete, or an error [status, message] (the connection is then closed)
sub parse_request
{
	my ($c) = @_;
	my $p = $c->{partial};

	if (!$p)
	{
		$c->{in} =~ s/\A(?:\r?\n)+//;	# stray CRLF between requests
		my $end = index($c->{in}, "\r\n\r\n");
		my $seplen = 4;
		if ($end < 0)
		{
			$end = index($c->{in}, "\n\n");
			$seplen = 2;
		}
		if ($end < 0)
		{
			return [ 431, 'headers too large' ] if length $c->{in} > $MAX_HEADER;
			return undef;
		}
		return [ 431, 'headers too large' ] if $end > $MAX_HEADER;
		my $head = substr($c->{in}, 0, $end);
		substr($c->{in}, 0, $end + $seplen, '');

		my @lines = split /\r?\n/, $head;
		my $rl = shift @lines // '';
		my ($method, $target, $version) =
		  $rl =~ m{^([A-Za-z]+)\s+(\S+)(?:\s+HTTP/(\d+\.\d+))?\s*$}
		  or return [ 400, 'bad request line' ];
		my (%h, $last);
		for my $l (@lines)
		{
			if ($l =~ /^[ \t]+(.*)$/ && defined $last)	# obsolete folding
			{
				$h{$last} .= " $1";
				next;
			}
			my ($n, $v) = $l =~ /^([^:\s]+)\s*:\s*(.*?)\s*$/
			  or return [ 400, 'bad header line' ];
			$n = lc $n;
			$h{$n} = exists $h{$n} ? "$h{$n}, $v" : $v;
			$last = $n;
		}
		my ($path, $query) = split /\?/, $target, 2;
		$p = $c->{partial} = {
			method => uc $method,
			path => $path,
			query => $query // '',
			version => $version // '1.0',
			headers => \%h,
			body => '',
		};
		if (($h{'transfer-encoding'} // '') =~ /chunked/i)
		{
			$p->{chunked} = 1;
		}
		elsif (defined $h{'content-length'})
		{
			return [ 400, 'bad content-length' ]
			  unless $h{'content-length'} =~ /^\s*(\d+)\s*$/;
			$p->{length} = $1;
			return [ 413, 'body too large' ] if $p->{length} > $MAX_BODY;
		}
		else
		{
			$p->{length} = 0;
		}
		if (($h{expect} // '') =~ /^100-continue$/i
			&& ($p->{chunked} || $p->{length} > length $c->{in}))
		{
			send_bytes($c, "HTTP/1.1 100 Continue\r\n\r\n");
		}
	}

	if (!$p->{chunked})
	{
		return undef if length $c->{in} < $p->{length};
		$p->{body} = substr($c->{in}, 0, $p->{length}, '');
	}
	else
	{
		for (;;)
		{
			if ($p->{trailers})
			{
				# trailers end at an empty line; they are ignored
				for (;;)
				{
					my $e = index($c->{in}, "\n");
					return undef if $e < 0;
					my $line = substr($c->{in}, 0, $e + 1, '');
					last if $line =~ /^\r?\n$/;
				}
				last;
			}
			my $e = index($c->{in}, "\n");
			if ($e < 0)
			{
				return [ 400, 'chunk size line too long' ] if length $c->{in} > 1024;
				return undef;
			}
			my $line = substr($c->{in}, 0, $e + 1);
			my ($size) = $line =~ /^([0-9a-fA-F]+)/
			  or return [ 400, 'bad chunk size' ];
			$size = hex $size;
			if ($size == 0)
			{
				substr($c->{in}, 0, $e + 1, '');
				$p->{trailers} = 1;
				next;
			}
			return [ 413, 'body too large' ]
			  if length($p->{body}) + $size > $MAX_BODY;
			# the chunk, then CRLF (or LF)
			return undef if length $c->{in} < $e + 1 + $size + 1;
			my $after = substr($c->{in}, $e + 1 + $size, 2);
			my $crlf = $after eq "\r\n" ? 2 : substr($after, 0, 1) eq "\n" ? 1 : 0;
			if (!$crlf)
			{
				return undef if $after eq "\r";		# wait for the \n
				return [ 400, 'bad chunk' ];
			}
			$p->{body} .= substr($c->{in}, $e + 1, $size);
			substr($c->{in}, 0, $e + 1 + $size + $crlf, '');
		}
	}
	delete $c->{partial};
	return $p;
}

# Handle the complete requests in the input buffer, one at a time
sub process_input
{
	my ($c) = @_;
	while (!$c->{dead} && $c->{state} eq 'read')
	{
		my $req = parse_request($c);
		if (!defined $req)
		{
			# incomplete; the client went away: nothing more will come
			close_conn($c) if $c->{eof};
			return;
		}
		if (ref $req eq 'ARRAY')
		{
			$c->{close_after} = 1;
			$c->{state} = 'busy';
			simple_response($c, $req->[0], 'application/json',
				$J->encode({ error => "mock: $req->[1]" }));
			return;
		}
		$c->{state} = 'busy';
		handle_request($c, $req);
	}
}

sub log_request
{
	my ($c, $req) = @_;
	my $body = $req->{body};
	my $parsed;
	if (length $body)
	{
		$parsed = eval { $JBODY->decode($body) };
		if ($@)
		{
			my $s = $body;
			$parsed = utf8::decode($s) ? $s : $body;
		}
	}
	else
	{
		$parsed = '';
	}
	$req->{json} = ref $parsed ? $parsed : undef;
	my $line = $J->encode({
			t => time() + 0.0,
			conn => $c->{id},
			method => $req->{method},
			path => $req->{path},
			query => $req->{query},
			headers => $req->{headers},
			body => $parsed,
		}) . "\n";
	my $n = syswrite($logfh, $line);
	warn "mock_agent: cannot write the log: $!\n"
	  unless defined $n && $n == length $line;
}

sub query_params
{
	my ($q) = @_;
	my %p;
	for my $kv (split /[&;]/, $q)
	{
		my ($k, $v) = split /=/, $kv, 2;
		next unless defined $k && length $k;
		$v //= '';
		for ($k, $v)
		{
			tr/+/ /;
			s/%([0-9A-Fa-f]{2})/chr(hex $1)/ge;
		}
		$p{$k} = $v;
	}
	return \%p;
}

# JSON object with keys in the given order (the values encoded by $J)
sub oj
{
	my @kv = @_;
	my @parts;
	while (@kv)
	{
		my ($k, $v) = splice(@kv, 0, 2);
		push @parts, $J->encode("$k") . ':' . $J->encode($v);
	}
	return '{' . join(',', @parts) . '}';
}

sub is_json_string
{
	my ($v) = @_;
	return defined $v && !ref $v && $JC->encode($v) =~ /^"/;
}

# T, the text the reply echoes (a character string)
sub echo_text
{
	my ($req, $openai) = @_;
	my $b = $req->{json};
	return '' unless ref $b eq 'HASH' && ref $b->{messages} eq 'ARRAY'
	  && @{ $b->{messages} };
	my $m = $b->{messages}[-1];
	return '' unless ref $m eq 'HASH' && exists $m->{content};
	my $content = $m->{content};
	if ($openai)
	{
		return is_json_string($content) ? $content : $JC->encode($content);
	}
	return $content->{text}
	  if ref $content eq 'HASH' && is_json_string($content->{text});
	return $JC->encode($content);
}

# The deltas of a text: (echo prefix, rest) by default, else $n pieces
sub split_text
{
	my ($full, $n, @default) = @_;
	return @default unless defined $n && $n =~ /^\d+$/ && $n >= 1;
	$n = 100000 if $n > 100000;
	my $len = length $full;
	return ((map { substr($full, $_, 1) } 0 .. $len - 1), ('.') x ($n - $len))
	  if $len < $n;
	my @out;
	my $pos = 0;
	for my $i (0 .. $n - 1)
	{
		my $end = int(($i + 1) * $len / $n);
		push @out, substr($full, $pos, $end - $pos);
		$pos = $end;
	}
	return @out;
}

sub ids
{
	my ($req) = @_;
	my $b = ref $req->{json} eq 'HASH' ? $req->{json} : {};
	my $turn = $b->{turn} // 0;
	my $att = $b->{attempt} // 0;
	$turn = $JC->encode($turn) if ref $turn;
	$att = $JC->encode($att) if ref $att;
	return ($turn, $att);
}

# A step list turned into a step generator
sub steps_of
{
	my @steps = @_;
	return sub { shift @steps };
}

# The UI-message-stream chunks (JSON texts) of one reply
sub ui_chunks
{
	my ($msgid, @deltas) = @_;
	return (oj(type => 'start', messageId => $msgid),
		oj(type => 'text-start', id => 't1'),
		(map { oj(type => 'text-delta', id => 't1', delta => $_) } @deltas),
		oj(type => 'text-end', id => 't1'),
		oj(type => 'finish'));
}

sub jsonl_response
{
	my ($c, $delay, @lines) = @_;
	stream_response($c, 'application/x-ndjson',
		steps_of(map { [ $delay, "$_\n" ] } @lines));
}

sub reply_jsonl
{
	my ($c, $req, $qp) = @_;
	my $t = echo_text($req, 0);
	my ($turn, $att) = ids($req);
	jsonl_response($c, $qp->{delay_ms},
		ui_chunks("m-$turn-$att",
			split_text("echo: $t", $qp->{chunks}, 'echo: ', $t)));
}

sub reply_sse
{
	my ($c, $req, $qp) = @_;
	my $t = echo_text($req, 0);
	my ($turn, $att) = ids($req);
	my @ev = map { [ $qp->{delay_ms}, "data: $_\n\n" ] }
	  ui_chunks("m-$turn-$att",
		split_text("echo: $t", $qp->{chunks}, 'echo: ', $t));
	splice(@ev, 1, 0, [ 0, ": keep-alive\n\n" ]);
	push @ev, [ $qp->{delay_ms}, "data: [DONE]\n\n" ];
	stream_response($c, 'text/event-stream', steps_of(@ev),
		[ 'x-vercel-ai-ui-message-stream: v1' ]);
}

sub reply_openai
{
	my ($c, $req, $qp) = @_;
	my $t = echo_text($req, 1);
	my $chunk = sub {
		my ($delta, $finish) = @_;
		my $choice = '{"index":0,"delta":' . $delta
		  . ',"finish_reason":' . (defined $finish ? $J->encode($finish) : 'null')
		  . '}';
		return 'data: {"id":"c1","object":"chat.completion.chunk",'
		  . '"model":"mock","choices":[' . $choice . "]}\n\n";
	};
	my @ev = ($chunk->(oj(role => 'assistant', content => '')));
	push @ev, $chunk->(oj(content => $_))
	  for split_text("echo: $t", $qp->{chunks}, 'echo: ', $t);
	push @ev, $chunk->('{}', 'stop');
	push @ev, "data: [DONE]\n\n";
	stream_response($c, 'text/event-stream',
		steps_of(map { [ $qp->{delay_ms}, $_ ] } @ev));
}

sub reply_status
{
	my ($c, $code, $qp) = @_;
	my @extra;
	push @extra, "Retry-After: $qp->{retry_after}"
	  if defined $qp->{retry_after} && length $qp->{retry_after};
	simple_response($c, $code, 'application/json',
		$J->encode({ error => "mock $code" }), \@extra);
}

sub reply_malformed
{
	my ($c, $req, $kind, $qp) = @_;
	my $delay = $qp->{delay_ms};
	my @head = (oj(type => 'start', messageId => 'm-bad'),
		oj(type => 'text-start', id => 't1'));
	my @tail = (oj(type => 'text-end', id => 't1'), oj(type => 'finish'));
	my %bad = (
		notjson => '{not json',
		notobject => '[1,2]',
		badutf8 => '{"type":"text-delta","id":"t1","delta":"' . "\xff\xfe" . '"}',
		longline => '{"type":"text-delta","id":"t1","delta":"'
		  . ('a' x (2 * 1024 * 1024)) . '"}',
		nodelta => '{"type":"text-delta","id":"t1"}',
		toolnoid => '{"type":"tool-input-start","toolName":"x"}');

	if (exists $bad{$kind})
	{
		jsonl_response($c, $delay, @head, $bad{$kind}, @tail);
	}
	elsif ($kind eq 'errorchunk')
	{
		jsonl_response($c, $delay, oj(type => 'start', messageId => 'm-bad'),
			oj(type => 'error', errorText => 'boom'), oj(type => 'finish'));
	}
	elsif ($kind eq 'openai_error')
	{
		stream_response($c, 'text/event-stream',
			steps_of([ $delay, "data: {\"error\":{\"message\":\"bad\"}}\n\n" ],
				[ $delay, "data: [DONE]\n\n" ]));
	}
	elsif ($kind eq 'huge')
	{
		my $line = '{"type":"text-delta","id":"t1","delta":"' . ('x' x 8000) . "\"}\n";
		my $target = 20 * 1024 * 1024;
		my $sent = 0;
		my @pre = map { "$_\n" } @head;
		my @post = map { "$_\n" } @tail;
		stream_response($c, 'application/x-ndjson', sub {
			return [ 0, shift @pre ] if @pre;
			if ($sent <= $target)
			{
				my $piece = $line x 8;		# 64 kB per HTTP chunk
				$sent += length $piece;
				return [ 0, $piece ];
			}
			return [ 0, shift @post ] if @post;
			return undef;
		});
	}
	else
	{
		reply_status($c, 404, {});
	}
}

# Count a request for /fail and /flaky: how many came before this one
sub seen_before
{
	my ($req) = @_;
	my $key = $req->{path} . "\0" . ($req->{headers}{'idempotency-key'} // '');
	return $attempts{$key}++;
}

sub handle_request
{
	my ($c, $req) = @_;
	my $h = $req->{headers};
	my $conn_hdr = lc($h->{connection} // '');
	$c->{close_after} = 1
	  if $conn_hdr =~ /\bclose\b/
	  || ($req->{version} eq '1.0' && $conn_hdr !~ /\bkeep-alive\b/);

	log_request($c, $req);

	my $qp = query_params($req->{query});
	my $path = $req->{path};

	if ($req->{method} ne 'POST')
	{
		simple_response($c, 405, 'application/json',
			$J->encode({ error => 'mock 405' }), [ 'Allow: POST' ]);
		return;
	}

	if ($path eq '/jsonl' || $path eq '/webhook' || $path eq '/slow')
	{
		reply_jsonl($c, $req, $qp);
	}
	elsif ($path eq '/sse')
	{
		reply_sse($c, $req, $qp);
	}
	elsif ($path eq '/openai')
	{
		reply_openai($c, $req, $qp);
	}
	elsif ($path =~ m{^/status/(\d{3})$} && $1 >= 200 && $1 <= 599)
	{
		reply_status($c, $1, $qp);
	}
	elsif ($path =~ m{^/fail/(\d+)/(\d{3})$} && $2 >= 200 && $2 <= 599)
	{
		my ($n, $code) = ($1, $2);
		if (seen_before($req) < $n)
		{
			reply_status($c, $code, $qp);
		}
		else
		{
			reply_jsonl($c, $req, $qp);
		}
	}
	elsif ($path =~ m{^/flaky/(\d+)$})
	{
		if (seen_before($req) < $1)
		{
			my ($turn, $att) = ids($req);
			jsonl_response($c, $qp->{delay_ms},
				oj(type => 'start', messageId => "m-$turn-$att"),
				oj(type => 'text-start', id => 't1'),
				oj(type => 'text-delta', id => 't1', delta => 'echo: '));
		}
		else
		{
			reply_jsonl($c, $req, $qp);
		}
	}
	elsif ($path eq '/hang')
	{
		$c->{state} = 'hang';	# input from now on is read and dropped
		$c->{in} = '';
	}
	elsif ($path eq '/idle')
	{
		my ($turn, $att) = ids($req);
		my @steps = ([ 0, oj(type => 'start', messageId => "m-$turn-$att") . "\n" ]);
		stream_response($c, 'application/x-ndjson',
			sub { @steps ? shift @steps : 'STALL' });
	}
	elsif ($path eq '/nofinish')
	{
		my $t = echo_text($req, 0);
		my ($turn, $att) = ids($req);
		my @l = ui_chunks("m-$turn-$att", 'echo: ', $t);
		pop @l;
		jsonl_response($c, $qp->{delay_ms}, @l);
	}
	elsif ($path eq '/close')
	{
		close_conn($c);
	}
	elsif ($path =~ m{^/malformed/([A-Za-z0-9_]+)$})
	{
		reply_malformed($c, $req, $1, $qp);
	}
	elsif ($path eq '/headers')
	{
		my $t = $JC->encode($h);
		my ($turn, $att) = ids($req);
		jsonl_response($c, $qp->{delay_ms},
			ui_chunks("m-$turn-$att", split_text($t, $qp->{chunks}, $t)));
	}
	elsif ($path eq '/multi')
	{
		jsonl_response($c, $qp->{delay_ms},
			ui_chunks('m1', 'first'), ui_chunks('m2', 'second'));
	}
	else
	{
		reply_status($c, 404, {});
	}
}

# ------------------------------------------------------------ main loop

sub accept_all
{
	for (;;)
	{
		my $s = $listener->accept or return;
		$s->blocking(0);
		setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
		binmode($s);
		my $c = {
			id => ++$conn_count,
			sock => $s,
			fd => fileno($s),
			in => '',
			out => '',
			state => 'read',
		};
		$conns{ $c->{fd} } = $c;
	}
}

sub read_conn
{
	my ($c) = @_;
	my $n = sysread($c->{sock}, my $buf, 65536);
	if (!defined $n)
	{
		return if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
		close_conn($c);
		return;
	}
	if ($n == 0)
	{
		$c->{eof} = 1;
		# a reply being produced is finished (then the connection closed);
		# a hang or a stalled reply ends now
		if ($c->{state} eq 'hang' || !$c->{resp} || $c->{resp}{stalled})
		{
			if ($c->{state} eq 'read')
			{
				process_input($c);	# a request complete but unhandled?
			}
			else
			{
				close_conn($c);
			}
		}
		return;
	}
	return if $c->{state} eq 'hang';
	$c->{in} .= $buf;
	process_input($c) if $c->{state} eq 'read';
}

while (!$stop)
{
	my $rsel = IO::Select->new($listener);
	my $wsel = IO::Select->new();
	for my $c (values %conns)
	{
		$rsel->add($c->{sock})
		  unless $c->{eof} || length($c->{in}) > $READ_PAUSE;
		$wsel->add($c->{sock}) if length $c->{out};
	}
	my ($r, $w) = IO::Select->select($rsel, $wsel, undef, next_timeout());
	last if $stop;
	for my $s (@{ $w // [] })
	{
		my $c = $conns{ fileno($s) // -1 } or next;
		next unless $c->{sock} == $s;
		flush_out($c);
		pump($c) if !$c->{dead} && $c->{resp};
	}
	for my $s (@{ $r // [] })
	{
		if ($s == $listener)
		{
			accept_all();
			next;
		}
		my $c = $conns{ fileno($s) // -1 } or next;
		next unless $c->{sock} == $s;
		read_conn($c);
	}
	run_timers();
}

close_conn($_) for values %conns;
exit 0;
