# test/FleetlmTest.pm
#
# Helpers shared by fleetlm's TAP tests: a node with fleetlm preloaded, a
# concurrent append load whose acknowledgements are recorded, and the
# verification that every acknowledged message survived exactly once.
#
# Load: each client is a psql process running a script of appends; psql
# prints a line "seq marker session" only after the server acknowledged the
# append, so the output files are the list of acknowledged messages even if
# the server is killed half way.  Each client's stderr is kept too:
# finish_load returns it, and check_client_errors asserts that it holds
# only the errors the injected fault explains.
package FleetlmTest;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(usleep);

our @EXPORT = qw(fleetlm_node create_sessions start_load finish_load wait_acked
  build_pipeline_client fsync_shim fsync_fault_on fsync_fault_off
  verify_acked restart_node wait_ready stat_value fleet_query
  wal_dir segment_files client_messages check_client_errors crash_errors
  table_vs_messages start_mock_agent stop_mock_agent mock_requests
  agent_node wait_answer answers_of
  fleetlm_primary fleetlm_standby set_sync_standby wait_writable
  wait_standby verify_prefix check_continues acked_now
  append_statements flush_lsns lsn_number acked_before_lsn pg_wal_shim kill9_all
  batch_markers check_batches start_reader);

# A psql session of its own for a test's reader, which may run thousands
# of queries (BackgroundPsql would log every one).  Returns a hash:
# query => sub (sql) returning (stdout, stderr) of that query, finish =>
# sub that ends the session.
sub start_reader
{
	my ($node) = @_;
	my ($in, $out, $err) = ('', '', '');
	my $h = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-f', '-' ],
		'<', \$in, '>', \$out, '2>', \$err, IPC::Run::timeout(120));
	return {
		query => sub {
			my ($sql) = @_;
			$in .= "$sql;\n\\echo '--end--'\n";
			$h->pump until $out =~ /--end--\n/;
			my $o = $out;
			$o =~ s/\n?--end--\n//;
			$out = '';
			my $e = $err;
			$err = '';
			return ($o, $e);
		},
		finish => sub {
			$in .= "\\q\n";
			$h->finish;
		} };
}

# A started node with fleetlm preloaded and created in database postgres.
# %conf: extra settings (name => value).
sub fleetlm_node
{
	my ($name, %conf) = @_;
	return fleetlm_node_with($name, {}, %conf);
}

# fleetlm_node, with $init: the parameters of PostgreSQL::Test::Cluster's
# init (allows_streaming, has_archiving ...).
sub fleetlm_node_with
{
	my ($name, $init, %conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%$init);
	my %settings = (
		shared_preload_libraries => "'fleetlm'",
		'fleetlm.database' => "'postgres'",
		'fleetlm.flush_interval' => '100ms',
		'fleetlm.wal_segment_size' => '1MB',
		'fleetlm.wal_buffers' => '4MB',
		'fleetlm.max_message_size' => '64kB',
		max_connections => 60,
		log_statement => 'none',
		restart_after_crash => 'on',
		fsync => 'on',
		%conf);
	$node->append_conf('postgresql.conf',
		join('', map { "$_ = $settings{$_}\n" } sort keys %settings));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION fleetlm');
	wait_ready($node);
	return $node;
}

# Wait until fleetlm accepts appends (recovery done).
sub wait_ready
{
	my ($node) = @_;
	$node->poll_query_until('postgres',
		"SELECT state = 'ready' FROM fleetlm.stat")
	  or die "fleetlm did not become ready";
	return;
}

sub fleet_query
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

sub stat_value
{
	my ($node, $col) = @_;
	return fleet_query($node, "SELECT $col FROM fleetlm.stat");
}

# Sessions "<prefix>-1" .. "<prefix>-n" with user "u-<i>", agent "a-<i>".
sub create_sessions
{
	my ($node, $prefix, $n) = @_;
	fleet_query($node,
		"SELECT fleetlm.create_session('u-' || i, 'a-' || i, session_id => '$prefix-' || i)"
		  . " FROM generate_series(1, $n) i");
	return [ map { "$prefix-$_" } 1 .. $n ];
}

# Start `clients` psql processes, each appending `per_client` messages to
# random sessions of $sessions.  Returns a load handle.  With
# pipeline => DEPTH and pipeline_client => PATH, the clients are
# test/pipeline_client.c programs sending DEPTH appends per pipeline.
# psql clients stop at their first error unless on_error_stop => 0;
# verbose => 1 makes psql print each error's SQLSTATE ("ERROR:  P0002: ...").
# statements => sub { my ($c) = @_; ... } replaces the random appends of
# client $c by the list it returns, of [ EXPR, MARKER, SESSION ]: EXPR is an
# SQL expression that yields a seq (e.g. a keyed append, or the first seq
# of an append_batch), acknowledged as the line "seq MARKER SESSION".
sub start_load
{
	my ($node, %o) = @_;
	my $clients = $o{clients} // 4;
	my $per = $o{per_client} // 200;
	my $sessions = $o{sessions} // ($o{statements} ? [] : die "sessions required");
	my $tag = $o{tag} // 'L';
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my @handles;
	my %sent;
	my @sent_by;
	my @line_marker;

	for my $c (1 .. $clients)
	{
		my $script = "$dir/client$c.sql";
		my $out = "$dir/client$c.out";
		open my $fh, '>', $script or die $!;
		my $line = 0;
		if ($o{async} && !$o{pipeline})
		{
			print $fh "SET fleetlm.synchronous_append = off;\n";
			$line++;
		}
		if ($o{verbose} && !$o{pipeline})
		{
			print $fh "\\set VERBOSITY verbose\n";
			$line++;
		}
		my %at;
		my @stmts;
		if ($o{statements})
		{
			@stmts = $o{statements}->($c);
		}
		else
		{
			for my $i (1 .. $per)
			{
				my $s = $sessions->[ int(rand(@$sessions)) ];
				my $user = $s;
				$user =~ s/^.*-(\d+)$/u-$1/;
				my $marker = "$tag-c$c-$i";
				push @stmts, [ "fleetlm.append('$s', '$user', 'text',"
					  . " '{\"m\": \"$marker\", \"pad\": \"" . ('x' x ($o{pad} // 40)) . "\"}')",
					$marker, $s ];
			}
		}
		for my $st (@stmts)
		{
			my ($expr, $marker, $s) = @$st;
			$sent{$marker} = $s;
			print $fh "SELECT $expr || ' $marker $s';\n";
			$at{ ++$line } = $marker;
		}
		push @sent_by, scalar(@stmts);
		push @line_marker, \%at;
		close $fh;
		my @cmd =
		  $o{pipeline}
		  ? ($o{pipeline_client}, $node->connstr('postgres'), $script, $o{pipeline})
		  : ('psql', '-XAtq', '-v', 'ON_ERROR_STOP=' . (($o{on_error_stop} // 1) ? 1 : 0),
			'-d', $node->connstr('postgres'), '-f', $script);
		my $h = IPC::Run::start(\@cmd, '>', $out, '2>', "$dir/client$c.err");
		push @handles, $h;
	}
	return { handles => \@handles, dir => $dir, clients => $clients,
		per_client => $per, sent_by => \@sent_by, sent => \%sent,
		line_marker => \@line_marker, pipeline => $o{pipeline},
		on_error_stop => ($o{pipeline} || ($o{on_error_stop} // 1)) ? 1 : 0 };
}

# Wait until the clients have had at least $n appends acknowledged, so a
# fault injected next hits the load mid-way.
sub wait_acked
{
	my ($load, $n) = @_;
	for my $try (1 .. 3000)
	{
		my $total = 0;
		for my $c (1 .. $load->{clients})
		{
			my $f = "$load->{dir}/client$c.out";
			next unless -e $f;
			open my $fh, '<', $f or next;
			$total++ while <$fh>;
			close $fh;
		}
		return $total if $total >= $n;
		usleep(20_000);
	}
	die "load did not reach $n acknowledged appends";
}

# Wait for the clients (they end by themselves, or fail when the server
# dies) and return [ acked list of [seq, marker, session] ], sent hash, and
# [ each client's stderr ] (client 1 first).  The load handle keeps, per
# client (index c - 1): {acked_by} the number of acknowledged appends,
# {exit} the raw wait status ($?), {stderr} the stderr text; and {failed}:
# marker => the ERROR a psql client got for that statement.
sub finish_load
{
	my ($load, $timeout) = @_;
	$timeout //= 180;
	my @exit;
	for my $h (@{ $load->{handles} })
	{
		eval {
			$h->finish;
			1;
		} or do { $h->kill_kill; };
		push @exit, $h->full_result(0);
	}
	my (@acked, @by, @stderr, %failed);
	for my $c (1 .. $load->{clients})
	{
		my @mine = client_acked($load, $c, 0);
		push @acked, @mine;
		push @by, scalar(@mine);
		my $err = '';
		if (open my $fh, '<', "$load->{dir}/client$c.err")
		{
			local $/;
			$err = <$fh> // '';
			close $fh;
		}
		push @stderr, $err;
		# psql names the script line of each error: the statement
		if (!$load->{pipeline})
		{
			for my $l (split /\n/, $err)
			{
				next unless $l =~ /^psql:.*?:(\d+): (ERROR:  .*)$/;
				my $m = $load->{line_marker}[ $c - 1 ]{$1};
				$failed{$m} = $2 if defined $m;
			}
		}
	}
	$load->{failed} = \%failed;
	$load->{acked_by} = \@by;
	$load->{exit} = \@exit;
	$load->{stderr} = \@stderr;
	return (\@acked, $load->{sent}, \@stderr);
}

# The appends client $c of a load has had acknowledged so far, as
# [seq, marker, session]; with $complete_only, only lines psql ended (a
# running client may be half way through printing one).
sub client_acked
{
	my ($load, $c, $complete_only) = @_;
	my @acked;
	open my $fh, '<', "$load->{dir}/client$c.out" or return ();
	while (my $line = <$fh>)
	{
		next if $complete_only && $line !~ /\n$/;
		chomp $line;
		next unless $line =~ /^(\d+) (\S+) (\S+)$/;
		push @acked, [ $1, $2, $3 ];
	}
	close $fh;
	return @acked;
}

# What the clients of a running load have had acknowledged so far: every
# append acknowledged before the call (psql prints the line once the
# server answered), as a list like finish_load's.
sub acked_now
{
	my ($load) = @_;
	return [ map { client_acked($load, $_, 1) } 1 .. $load->{clients} ];
}

# The messages of a client's stderr: each is the first line of one error or
# warning, without the client's prefix ("psql:FILE:LINE: ", "psql: ",
# pipeline_client's "statement failed: " ...); the DETAIL, HINT, CONTEXT,
# LOCATION lines and indented continuation lines that follow belong to it
# and are left out.
sub client_messages
{
	my ($stderr) = @_;
	my @msgs;
	for my $line (split /\n/, $stderr // '')
	{
		next if $line =~ /^\s/ || $line =~ /^\s*$/;
		next if $line =~ /^(DETAIL|HINT|CONTEXT|LOCATION|QUERY|STATEMENT):  /;
		$line =~ s/^psql:.*?:\d+: //;
		$line =~ s/^psql: //;
		$line =~ s/^(statement failed|send failed|sync failed|connection failed|expected the end of a pipeline): //;
		push @msgs, $line;
	}
	return @msgs;
}

# What a client may see when the server crashes under it (kill -9 of the
# postmaster or of a worker, an immediate stop), as psql and libpq print it:
# its backend told to exit (or, when the postmaster died, exiting while it
# waited for durability, which says so), the connection lost, or (a client
# that connects only then) no server, or one still shutting down or
# recovering.
sub crash_errors
{
	my @msgs = (
		'WARNING:  terminated the wait for durability of fleetlm messages',
		'WARNING:  terminating connection because of crash of another server process',
		'FATAL:  terminating connection because of crash of another server process',
		'FATAL:  terminating connection due to unexpected postmaster exit',
		'(WARNING|FATAL):  terminating connection due to immediate shutdown command',
		'FATAL:  the database system is (in recovery mode|shutting down|starting up)',
		'server closed the connection unexpectedly',
		'(error: )?connection to server was lost',
		'could not receive data from server: Connection reset by peer',
		'could not send data to server: (Broken pipe|Connection reset by peer)',
		'no connection to the server');
	my $any = join('|', @msgs);
	return (
		(map { qr/^(?:$_)$/ } @msgs),
		# a client that connects only then
		qr/^(error: )?connection to server (on socket "[^"]*"|at "[^"]*", port \d+) failed: (Connection refused|No such file or directory|$any)$/);
}

# Assert that every client of a finished load wrote only messages matching
# one of @$allowed to stderr (see client_messages), and that a client that
# ended early (non-zero exit, or, when it stops at its first error, fewer
# acknowledged appends than it sent) ended with such an error: an
# unexplained error fails, and so does a client that ended silently.
# %o: allowed => [ qr/.../ ] (default none), may_end_early => 0 (every
# client must run to its end with exit status 0).  Returns a hash:
# early => clients that ended early, messages => all messages,
# count => { message => how often }, per_client => [ [messages] ].
sub check_client_errors
{
	my ($load, $label, %o) = @_;
	my @allowed = @{ $o{allowed} // [] };
	my $may_end_early = $o{may_end_early} // 1;
	my $stops = $load->{on_error_stop};
	my (%count, @per, @bad, @silent, @early);
	my $total = 0;

	die "check_client_errors: finish_load first" unless $load->{stderr};
	for my $i (0 .. $load->{clients} - 1)
	{
		my $c = $i + 1;
		my @msgs = client_messages($load->{stderr}[$i]);
		push @per, \@msgs;
		$total += @msgs;
		for my $m (@msgs)
		{
			$count{$m}++;
			push @bad, "client $c: $m" unless grep { $m =~ $_ } @allowed;
		}
		my $ended_early = $load->{exit}[$i] != 0
		  || ($stops && $load->{acked_by}[$i] < $load->{sent_by}[$i]);
		next unless $ended_early;
		push @early, $c;
		push @silent, "client $c (exit status $load->{exit}[$i], $load->{acked_by}[$i] acknowledged)"
		  unless @msgs;
	}
	ok(!@bad, "$label: client stderr holds only errors the fault explains ($total messages)")
	  or diag("$label: unexplained client errors:\n" . join("\n", @bad)
		  . "\n--- stderr of the clients ---\n"
		  . join("", map { "client " . ($_ + 1) . ":\n$load->{stderr}[$_]" } 0 .. $load->{clients} - 1));
	ok(!@silent, "$label: every client that ended early ended with such an error ("
		  . scalar(@early) . " ended early)")
	  or diag("$label: clients that ended early without an error: " . join(', ', @silent));
	if (!$may_end_early)
	{
		is(scalar(@early), 0, "$label: every client ran to its end")
		  or diag("$label: clients that ended early: @early; acknowledged: @{ $load->{acked_by} }");
	}
	return { early => scalar(@early), messages => $total, count => \%count,
		per_client => \@per };
}

# Start the node, retrying while a killed postmaster's
# children may linger for a moment holding the shared memory.
sub restart_node
{
	my ($node) = @_;
	my $pidfile = $node->data_dir . '/postmaster.pid';
	if (open my $fh, '<', $pidfile)
	{
		my $pid = <$fh>;
		close $fh;
		chomp $pid;
		for my $try (1 .. 300)
		{
			last unless kill(0, $pid);
			usleep(100_000);
		}
	}
	for my $try (1 .. 60)
	{
		return 1 if $node->start(fail_ok => 1);
		# forget a pid read from a stale lock file, then retry
		$node->{_pid} = undef;
		sleep 1;
	}
	die "node did not restart";
}

# Check: every acknowledged message present exactly once with its seq and
# marker; each session's seqs gapless from 1; no marker that was never
# sent; no marker twice; after flush() the table equals messages().
# Returns the number of acknowledged messages checked.
sub verify_acked
{
	my ($node, $acked, $sent, $sessions, $label) = @_;
	$label //= 'verify';
	my ($found, $last, $problems) = scan_sessions($node, $sent, $sessions, $label);

	my $lost = 0;
	for my $a (@$acked)
	{
		my ($seq, $m, $s) = @$a;
		if (!exists $found->{$m})
		{
			diag("$label: acknowledged message $m (session $s seq $seq) is lost");
			$lost++;
		}
		elsif ($found->{$m} ne "$s $seq")
		{
			diag("$label: acknowledged message $m was $s $seq, now $found->{$m}");
			$problems++;
		}
	}
	is($lost, 0, "$label: no acknowledged message lost (" . scalar(@$acked) . " checked)");
	is($problems, 0, "$label: seqs gapless, no duplicates, no unknown markers");
	check_flushed_table($node, $sessions, $label);
	return ($lost, scalar(@$acked), scalar(keys %$found));
}

# The messages() rows of each session of $sessions on $node, checked: each
# session's seqs gapless from 1, every marker one of %$sent, no marker
# twice (each problem is a diag).  Returns ({ marker => "session seq" },
# { session => its highest seq, 0 without messages }, number of problems).
sub scan_sessions
{
	my ($node, $sent, $sessions, $label) = @_;
	my (%found, %last);
	my $problems = 0;

	for my $s (@$sessions)
	{
		my $rows = fleet_query($node,
			"SELECT seq, content->>'m' FROM fleetlm.messages('$s', 0, 100000) ORDER BY seq");
		my $expect = 1;
		for my $line (split /\n/, $rows)
		{
			my ($seq, $m) = split /\|/, $line;
			if ($seq != $expect)
			{
				diag("$label: session $s has seq $seq where $expect was expected");
				$problems++;
			}
			$expect = $seq + 1;
			if (!defined $m || !exists $sent->{$m})
			{
				diag("$label: session $s seq $seq has a marker never sent: "
					  . ($m // 'NULL'));
				$problems++;
				next;
			}
			if (exists $found{$m})
			{
				diag("$label: marker $m appears twice ($found{$m} and $s $seq)");
				$problems++;
			}
			$found{$m} = "$s $seq";
		}
		$last{$s} = $expect - 1;
	}
	return (\%found, \%last, $problems);
}

# After flush() the table holds exactly what messages() returns.
sub check_flushed_table
{
	my ($node, $sessions, $label) = @_;
	fleet_query($node, 'SELECT fleetlm.flush()');
	is(table_vs_messages($node, $sessions), '0',
		"$label: after flush() the table holds exactly what messages() returns");
	return;
}

# verify_acked for a node that may lack the tail of what was acknowledged
# (a promoted asynchronous standby, a restored backup): each session holds
# a prefix of its acknowledged messages.  Checks: every message of
# $o{required} (a list like $acked: what must have survived) present at
# its seq; each session's seqs gapless 1..n, every row a message that was
# sent, none twice; each acknowledged message of seq <= n of its session
# present at that seq (so none missing below one that survived, and no
# seq holds other content than was acknowledged), none of seq > n present
# anywhere; after flush() the table equals messages().  Returns (lost:
# acknowledged messages beyond their session's n, acknowledged checked).
sub verify_prefix
{
	my ($node, $acked, $sent, $sessions, $label, %o) = @_;
	my $required = $o{required} // [];
	my ($found, $last, $problems) = scan_sessions($node, $sent, $sessions, $label);
	my ($lost, $missing) = (0, 0);

	for my $a (@$required)
	{
		my ($seq, $m, $s) = @$a;
		next if exists $found->{$m};
		diag("$label: required message $m (session $s seq $seq) is missing");
		$missing++;
	}
	for my $a (@$acked)
	{
		my ($seq, $m, $s) = @$a;
		if ($seq > $last->{$s})
		{
			$lost++;
			next unless exists $found->{$m};
			diag("$label: acknowledged message $m ($s $seq), beyond the session's"
				  . " last seq $last->{$s}, is at $found->{$m}");
			$problems++;
		}
		elsif (!exists $found->{$m})
		{
			diag("$label: acknowledged message $m ($s $seq) is missing below"
				  . " the session's last seq $last->{$s}");
			$problems++;
		}
		elsif ($found->{$m} ne "$s $seq")
		{
			diag("$label: acknowledged message $m was $s $seq, now $found->{$m}");
			$problems++;
		}
	}
	is($missing, 0, "$label: every required message present ("
		  . scalar(@$required) . " checked)");
	is($problems, 0, "$label: each session a gapless prefix of its acknowledged"
		  . " messages (" . scalar(@$acked) . " checked, $lost beyond it), nothing twice,"
		  . " no seq with other content than acknowledged");
	check_flushed_table($node, $sessions, $label);
	return ($lost, scalar(@$acked));
}

# How many rows of the sessions differ between the table fleetlm.messages
# and what fleetlm.messages() returns (both ways, duplicates counted).
sub table_vs_messages
{
	my ($node, $sessions) = @_;
	my $list = join(',', map { "'$_'" } @$sessions);
	return fleet_query($node, "
		WITH t AS (SELECT * FROM fleetlm.messages WHERE session_id IN ($list)),
		     f AS (SELECT m.* FROM unnest(ARRAY[$list]) s,
		                LATERAL fleetlm.messages(s, 0, 100000) m)
		SELECT (SELECT count(*) FROM (TABLE t EXCEPT ALL TABLE f) x)
		     + (SELECT count(*) FROM (TABLE f EXCEPT ALL TABLE t) y)");
}

# Compile test/pipeline_client.c against libpq; returns its path, or undef
# without a C compiler or libpq headers.
sub build_pipeline_client
{
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $src = "$ENV{TESTDIR}/test/pipeline_client.c";
	# a relocated test installation has no headers: ask the system too
	my @inc;
	for my $pgc ('pg_config', '/usr/bin/pg_config')
	{
		my $i = `$pgc --includedir 2>/dev/null`;
		chomp $i;
		push @inc, "-I$i" if $i ne '' && -e "$i/libpq-fe.h";
	}
	return undef
	  unless system("cc -O2 -o $dir/pipeline_client $src @inc -lpq") == 0;
	return "$dir/pipeline_client";
}

# Compile test/fsync_shim.c; returns the .so path, or undef without a C
# compiler.
sub build_fsync_shim
{
	return build_shim('fsync_shim');
}

# Compile test/$name.c into a shared library; returns its path, or undef
# without a C compiler.
sub build_shim
{
	my ($name) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $src = "$ENV{TESTDIR}/test/$name.c";
	return undef
	  unless system("cc -shared -fPIC -O2 -o $dir/$name.so $src -ldl") == 0;
	return "$dir/$name.so";
}

# SIGKILL to the node's postmaster and all its children at once, as a
# power loss would stop them (after a kill -9 of the postmaster alone, its
# children may go on for a moment).
sub kill9_all
{
	my ($node) = @_;
	my $pm = $node->{_pid};
	my @pids = ($pm);
	opendir my $d, '/proc' or die "/proc: $!";
	for my $p (grep { /^\d+$/ } readdir $d)
	{
		open my $fh, '<', "/proc/$p/stat" or next;
		my $stat = <$fh> // '';
		close $fh;
		push @pids, $p if $stat =~ /^\d+ \(.*\) \S (\d+) / && $1 == $pm;
	}
	closedir $d;
	kill 'KILL', @pids;
	$node->{_pid} = undef;
	for my $try (1 .. 300)
	{
		last unless grep { kill(0, $_) } @pids;
		usleep(10_000);
	}
	return scalar(@pids);
}

# test/pg_wal_shim.c, built: returns (the .so's path, the path of its
# trigger file), or () without a C compiler.  Only the nodes started with
# LD_PRELOAD = the .so and FLEETLM_STALL_PG_WAL = the trigger in their
# environment stall, while the trigger exists (fsync_fault_on and
# fsync_fault_off).
sub pg_wal_shim
{
	my $shim = build_shim('pg_wal_shim');
	return () unless defined $shim;
	return ($shim, PostgreSQL::Test::Utils::tempdir() . '/pg-wal-stall-now');
}

# Arm test/fsync_shim.c for the nodes this test starts afterwards: builds
# it, sets LD_PRELOAD, and points FLEETLM_<MODE>_FSYNC ('STALL': fdatasync
# blocks; 'FAIL': it fails with EIO) at a trigger file.  Returns the
# trigger's path, or undef without a C compiler.  The fault is on while the
# file exists: fsync_fault_on and fsync_fault_off.
sub fsync_shim
{
	my ($mode) = @_;
	my $shim = build_fsync_shim();
	return undef unless defined $shim;
	my $trigger = PostgreSQL::Test::Utils::tempdir() . '/' . lc($mode) . '-now';
	$ENV{LD_PRELOAD} = $shim;
	$ENV{"FLEETLM_${mode}_FSYNC"} = $trigger;
	return $trigger;
}

sub fsync_fault_on
{
	my ($trigger) = @_;
	open my $fh, '>', $trigger or die "$trigger: $!";
	close $fh;
	return;
}

sub fsync_fault_off
{
	my ($trigger) = @_;
	unlink $trigger or die "$trigger: $!";
	return;
}

sub wal_dir
{
	my ($node) = @_;
	return $node->data_dir . '/fleetlm_wal';
}

# Sorted segment file names of the node's WAL directory.
sub segment_files
{
	my ($node) = @_;
	opendir my $d, wal_dir($node) or die $!;
	my @f = sort grep { /^[0-9A-F]{16}$/ } readdir $d;
	closedir $d;
	return @f;
}

our @mock_agents;

# A mock agent (test/mock_agent.pl) on 127.0.0.1, on a free port.  Returns
# a handle: {port}, {url} ("http://127.0.0.1:PORT"), {log} (its request
# log).  The agent's behaviour is chosen by the webhook path (see the
# script).
sub start_mock_agent
{
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my %m = (log => "$dir/requests.jsonl", out => '', err => '');
	my $pf = "$dir/port";
	$m{handle} = IPC::Run::start(
		[ 'perl', "$ENV{TESTDIR}/test/mock_agent.pl", '--port-file', $pf,
		  '--log', $m{log} ],
		'>', \$m{out}, '2>', \$m{err});
	for (1 .. 200)
	{
		last if -s $pf;
		usleep(50_000);
	}
	open my $fh, '<', $pf or die "mock agent did not start: $m{err}";
	my $port = <$fh>;
	close $fh;
	chomp $port;
	$m{port} = $port;
	$m{url} = "http://127.0.0.1:$port";
	push @mock_agents, \%m;
	return \%m;
}

# a test that dies half way must not leave its mock agent running
END
{
	for my $m (@mock_agents)
	{
		eval { $m->{handle}->kill_kill(grace => 1) if $m->{handle}->pumpable; };
	}
}

sub stop_mock_agent
{
	my ($m) = @_;
	$m->{handle}->signal('TERM');
	$m->{handle}->finish;
	return $m->{err};
}

# The requests the mock received so far, as hashes (see the script),
# optionally only those whose path is $path.
sub mock_requests
{
	my ($m, $path) = @_;
	my @r;
	open my $fh, '<', $m->{log} or return ();
	while (my $line = <$fh>)
	{
		my $r = decode_json($line);
		push @r, $r if !defined $path || $r->{path} eq $path;
	}
	close $fh;
	return @r;
}

# A node whose allowlist lets agents call the mock.  %conf as fleetlm_node.
sub agent_node
{
	my ($name, $mock, %conf) = @_;
	return fleetlm_node($name,
		'fleetlm.agent_url_allowlist' => "'$mock->{url}/'",
		%conf);
}

# Wait (up to $timeout s, default 30) until session $s holds the answer to
# turn $turn, and return it as a hash (seq, sender_id, kind, content,
# metadata; the jsonb columns decoded), or undef.
sub wait_answer
{
	my ($node, $s, $turn, $timeout) = @_;
	$timeout //= 30;
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		my $row = $node->safe_psql('postgres',
			"SELECT json_build_object('seq', seq, 'sender_id', sender_id, 'kind', kind,"
			  . " 'content', content, 'metadata', metadata)"
			  . " FROM fleetlm.messages('$s', 0, 100000)"
			  . " WHERE idempotency_key = 'turn:$turn'");
		return decode_json($row) if $row ne '';
		usleep(50_000);
	}
	return undef;
}

# Every answer (message keyed turn:<T>) of session $s: [ [T, kind], ... ]
# in seq order.
sub answers_of
{
	my ($node, $s) = @_;
	my $out = $node->safe_psql('postgres',
		"SELECT substr(idempotency_key, 6) || ' ' || kind"
		  . " FROM fleetlm.messages('$s', 0, 100000)"
		  . " WHERE idempotency_key LIKE 'turn:%' ORDER BY seq");
	return [ map { [ split / /, $_ ] } grep { $_ ne '' } split /\n/, $out ];
}


# A started primary with fleetlm: streaming replication allowed (wal_level
# replica, WAL senders, hot_standby for the standbys made from it) and
# fleetlm.replication on.  %o: has_archiving => 1 archives its WAL (see
# PostgreSQL::Test::Cluster); conf => { name => value } extra settings,
# over these (e.g. 'fleetlm.replication' => 'off').
sub fleetlm_primary
{
	my ($name, %o) = @_;
	return fleetlm_node_with($name,
		{ allows_streaming => 1, has_archiving => $o{has_archiving} // 0 },
		shared_buffers => '16MB',
		'fleetlm.replication' => 'on',
		synchronous_standby_names => "''",
		%{ $o{conf} // {} });
}

# A started hot standby of $primary, streaming from it: a fresh base backup
# of $primary restored as node $name (its walreceiver's application_name
# is the node name).  It has $primary's settings (fleetlm preloaded, the
# same fleetlm.replication), no synchronous standby of its own, and %o's
# conf => { name => value }.  With sync => 1 it becomes $primary's
# synchronous standby; either way this returns once $primary reports it
# streaming in that role.
sub fleetlm_standby
{
	my ($primary, $name, %o) = @_;
	my $backup = "for-$name";
	$primary->backup($backup);
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init_from_backup($primary, $backup, has_streaming => 1);
	my %conf = (synchronous_standby_names => "''", %{ $o{conf} // {} });
	$node->append_conf('postgresql.conf',
		join('', map { "$_ = $conf{$_}\n" } sort keys %conf));
	$node->start;
	set_sync_standby($primary, $o{sync} ? $name : '');
	wait_standby($primary, $name, $o{sync} ? 'sync' : 'async');
	return $node;
}

# Name $name (a standby's node name, '' for none) in $primary's
# synchronous_standby_names, and reload.
sub set_sync_standby
{
	my ($primary, $name) = @_;
	$primary->append_conf('postgresql.conf', "synchronous_standby_names = '$name'");
	$primary->reload;
	return;
}

# Wait until $primary reports standby $name streaming with sync_state
# $state ('sync', 'async').
sub wait_standby
{
	my ($primary, $name, $state) = @_;
	$primary->poll_query_until('postgres',
		"SELECT state = 'streaming' AND sync_state = '$state'"
		  . " FROM pg_stat_replication WHERE application_name = '$name'")
	  or die "standby $name is not streaming as $state";
	return;
}

# Wait (up to $timeout s, default 60) until an append to $session
# succeeds on $node, as it does on a promoted standby once fleetlm
# recovery ran.  Each attempt's marker ("$tag-w<n>") is added to %$sent:
# a failed attempt must leave no message, but the checks would allow one.
# Returns ([seq, marker, session] of the append that succeeded, or undef
# at the timeout; [ the first message of each failed attempt, with its
# SQLSTATE: "ERROR:  57P03: ..." ]).
sub wait_writable
{
	my ($node, $session, $tag, $sent, $timeout) = @_;
	my $deadline = time + ($timeout // 60);
	my $user = $session;
	$user =~ s/^.*-(\d+)$/u-$1/;
	my @errors;
	for (my $n = 1;; $n++)
	{
		my $marker = "$tag-w$n";
		$sent->{$marker} = $session;
		my ($out, $err) = ('', '');
		my $ret = $node->psql('postgres',
			"SELECT fleetlm.append('$session', '$user', 'text', '{\"m\": \"$marker\"}')",
			stdout => \$out, stderr => \$err,
			extra_params => [ '-v', 'VERBOSITY=verbose' ]);
		return ([ $out, $marker, $session ], \@errors)
		  if $ret == 0 && $out =~ /^\d+$/;
		push @errors, (client_messages($err))[0] // "psql exit status $ret";
		return (undef, \@errors) if time > $deadline;
		usleep(50_000);
	}
}

# One more append to each session of $sessions on $node: it must get the
# session's highest seq in messages() + 1, and last_seq must be that
# highest seq (seqs continue after every seq the node holds).  The appends
# (markers "$tag-<i>") are added to @$acked and %$sent.
sub check_continues
{
	my ($node, $sessions, $tag, $acked, $sent, $label) = @_;
	my $bad = 0;
	for my $i (0 .. $#$sessions)
	{
		my $s = $sessions->[$i];
		my $user = $s;
		$user =~ s/^.*-(\d+)$/u-$1/;
		my $marker = "$tag-$i";
		my ($last, $max) = split /\|/, fleet_query($node,
			"SELECT fleetlm.last_seq('$s'), coalesce(max(seq), 0)"
			  . " FROM fleetlm.messages('$s', 0, 100000)");
		$sent->{$marker} = $s;
		my $seq = fleet_query($node,
			"SELECT fleetlm.append('$s', '$user', 'text', '{\"m\": \"$marker\"}')");
		push @$acked, [ $seq, $marker, $s ];
		next if $last == $max && $seq == $max + 1;
		diag("$label: session $s: last_seq $last, highest seq $max, new append got $seq");
		$bad++;
	}
	is($bad, 0, "$label: last_seq is each session's highest seq and appends continue after it");
	return;
}

# Statements for start_load's statements option: $n appends of client $c
# to random sessions of $sessions, with the marker "$tag-c$c-<i>" in the
# content ({"m": marker}, with "pad": N x's with pad => N).  %o:
# keyed_every => K: every K-th append carries its marker as idempotency
# key; batches => { }, batch_every => K, batch_size => N (default 3):
# every K-th statement is instead an append_batch of N messages, markers
# "<marker>", "<marker>.2" ... "<marker>.N", acknowledged as its first
# seq, and recorded in the hash as marker => [ session, its markers ] (see
# batch_markers and check_batches); flush_lsn => 1: after each append a
# statement of its own prints PostgreSQL's WAL flush position ("X/Y marker
# session", see flush_lsns): the append's WAL record, flushed before the
# append returned, ends at or before it.
sub append_statements
{
	my ($tag, $c, $n, $sessions, %o) = @_;
	my @st;
	for my $i (1 .. $n)
	{
		my $s = $sessions->[ int(rand(@$sessions)) ];
		my $u = $s =~ s/^.*-(\d+)$/u-$1/r;
		my $m = "$tag-c$c-$i";
		my $pad = $o{pad} ? ", \"pad\": \"" . ('x' x $o{pad}) . '"' : '';
		my $expr;
		if ($o{batch_every} && $i % $o{batch_every} == 0)
		{
			my @ms = ($m, map { "$m.$_" } 2 .. ($o{batch_size} // 3));
			$o{batches}{$m} = [ $s, @ms ];
			$expr = "(SELECT min(b) FROM fleetlm.append_batch('$s', '$u', '["
			  . join(', ', map { "{\"kind\": \"text\", \"content\": {\"m\": \"$_\"$pad}}" } @ms)
			  . "]') b)";
		}
		else
		{
			my $key = ($o{keyed_every} && $i % $o{keyed_every} == 0)
			  ? ", idempotency_key => '$m'" : '';
			$expr = "fleetlm.append('$s', '$u', 'text', '{\"m\": \"$m\"$pad}'$key)";
		}
		# start_load adds " || ' MARKER SESSION'" to the last statement
		push @st, [ $expr
			  . ($o{flush_lsn} ? " || ' $m $s'; SELECT pg_current_wal_flush_lsn()::text" : ''),
			$m, $s ];
	}
	return @st;
}

# Add every message of the batches of append_statements to %$sent.
sub batch_markers
{
	my ($batches, $sent) = @_;
	for my $b (values %$batches)
	{
		my ($s, @ms) = @$b;
		$sent->{$_} = $s for @ms;
	}
	return;
}

# Each append_batch of %$batches is on $node whole, at consecutive seqs of
# its session, or not at all (those whose first seq was acknowledged:
# verify_acked's business).  Returns (whole, absent) counts.
sub check_batches
{
	my ($node, $batches, $sessions, $label) = @_;
	my %at;
	for my $s (@$sessions)
	{
		for my $line (split /\n/, fleet_query($node,
				"SELECT seq, content->>'m' FROM fleetlm.messages('$s', 0, 100000)"))
		{
			my ($seq, $m) = split /\|/, $line;
			$at{$m} = [ $s, $seq ] if defined $m;
		}
	}
	my ($whole, $absent, @bad) = (0, 0);
	for my $first (sort keys %$batches)
	{
		my ($s, @ms) = @{ $batches->{$first} };
		my @here = grep { exists $at{$_} } @ms;
		if (!@here)
		{
			$absent++;
			next;
		}
		my $start = $at{$first} ? $at{$first}[1] : -1;
		my @wrong = grep { !$at{ $ms[$_] } || $at{ $ms[$_] }[0] ne $s || $at{ $ms[$_] }[1] != $start + $_ } 0 .. $#ms;
		if (@wrong)
		{
			push @bad, "$first: " . join(', ', map { $at{$_} ? "$_ at @{ $at{$_} }" : "$_ missing" } @ms);
		}
		else
		{
			$whole++;
		}
	}
	is(scalar(@bad), 0, "$label: every append_batch whole at consecutive seqs or absent"
		  . " ($whole whole, $absent absent)")
	  or diag("$label: broken batches:\n" . join("\n", @bad));
	return ($whole, $absent);
}

# The WAL flush positions the clients of a load (of append_statements
# with flush_lsn) printed after their acknowledged appends: { marker =>
# LSN as a number }.
sub flush_lsns
{
	my ($load) = @_;
	my %lsn;
	for my $c (1 .. $load->{clients})
	{
		open my $fh, '<', "$load->{dir}/client$c.out" or next;
		while (my $line = <$fh>)
		{
			$lsn{$3} = lsn_number($1, $2)
			  if $line =~ m{^([0-9A-F]+)/([0-9A-F]+) (\S+) \S+\n};
		}
		close $fh;
	}
	return \%lsn;
}

# An LSN "X/Y" (or its two halves) as a number.
sub lsn_number
{
	my ($hi, $lo) = @_ == 1 ? split(m{/}, $_[0]) : @_;
	return hex($hi) * 2**32 + hex($lo);
}

# The acknowledged appends of @$acked whose client saw a WAL flush
# position at or before $lsn ("X/Y") after them (see flush_lsns): their
# WAL records end at or before $lsn.
sub acked_before_lsn
{
	my ($acked, $lsns, $lsn) = @_;
	my $limit = lsn_number($lsn);
	return [ grep { defined $lsns->{ $_->[1] } && $lsns->{ $_->[1] } <= $limit } @$acked ];
}

1;
