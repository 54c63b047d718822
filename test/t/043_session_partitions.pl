# 043_session_partitions.pl: the session table is one hash per partition
# lock, and the applier evicts one partition at a time.  A node with
# fleetlm.max_active_sessions = 256 (16 entries per partition):
#
#  - entries stay while their partition has room (no idle eviction);
#  - a crowded partition (more than 14 entries) loses only its least
#    recently used applied entries, down to 12: after one append to each
#    of 300 sessions and a flush, about 190 keep their entries (the former
#    whole-table eviction emptied the table at 3/4);
#  - under load over 400 sessions, with partitions crowded and evicted
#    all the time, every acknowledged append is there exactly once, seqs
#    gapless, and reads of one session (messages, last_seq) and of many
#    (list_sessions, which uses the table-wide eviction mark) never fail
#    nor go backwards.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use IPC::Run;
use FleetlmTest;

my $node = fleetlm_node('parts',
	'fleetlm.max_active_sessions' => 256,
	'fleetlm.flush_interval' => '10ms');
my $sessions = create_sessions($node, 'pt', 400);
create_sessions($node, 'bk', 300);

# --- entries stay while their partition has room
sub bulk_append
{
	my ($from, $to) = @_;
	fleet_query($node,
		"SET fleetlm.synchronous_append = off;"
		  . " SELECT count(fleetlm.append('bk-' || i, 'u-' || i, 'text', '{\"m\": \"bulk\"}'))"
		  . " FROM generate_series($from, $to) i; SELECT fleetlm.flush()");
}
bulk_append(1, 64);
# a few applier cycles (10 ms each)
usleep(1_500_000);
is(stat_value($node, 'active_sessions'), '64',
	'64 sessions in a table of 256: every entry stays, idle or not');

# --- a crowded partition keeps its most recently used applied entries
bulk_append(65, 300);
is(fleet_query($node, "SELECT count(*) FROM fleetlm.messages WHERE content->>'m' = 'bulk'"),
	'300', 'the bulk appends are applied');
my $active;
for (1 .. 20)
{
	usleep(50_000);
	$active = stat_value($node, 'active_sessions');
}
cmp_ok($active, '<=', 16 * 14,
	"300 sessions through 16 partitions of 16: none is left crowded (more than 14; $active entries)");
cmp_ok($active, '>=', 150,
	"crowded partitions were evicted down to 3/4 (12), not emptied: $active entries kept");
my $kept = $active;

# --- correctness while partitions are crowded and evicted under load
my $clients = 4;
my $per = 1500;
my $load = start_load($node, sessions => $sessions, clients => $clients, per_client => $per,
	tag => 'P', pad => 20, on_error_stop => 0, verbose => 1);

my $reader = start_reader($node);
sub read_query { return $reader->{query}->(@_); }

my (%last, @problems, @errors);
my ($reads, $max_active) = (0, 0);
my $deadline = time + 60;
while (time < $deadline)
{
	my $i = 1 + int(rand(@$sessions));
	my $s = "pt-$i";
	my ($l, $lerr) = read_query("SELECT fleetlm.last_seq('$s')");
	my ($m, $merr) = read_query(
		"SELECT coalesce(max(seq), 0) || ':' || count(*) FROM fleetlm.messages('$s', 0, 100000)");
	my ($ls, $lserr) = read_query(
		"SELECT coalesce(max(last_seq), 0) FROM fleetlm.list_sessions('u-$i')");
	if ($lerr ne '' || $merr ne '' || $lserr ne '')
	{
		push @errors, $lerr . $merr . $lserr;
		next;
	}
	$reads++;
	my ($max, $count) = split /:/, $m;
	push @problems, "$s: last_seq() went back from $last{$s} to $l" if $l < ($last{$s} // 0);
	push @problems, "$s: messages() has $count rows up to seq $max" if $max != $count;
	push @problems, "$s: messages() ends at $max, before last_seq() $l read before it" if $max < $l;
	push @problems, "$s: list_sessions() says last_seq $ls, before last_seq() $l read before it"
	  if $ls < $l;
	$last{$s} = $max;
	if ($reads % 20 == 0)
	{
		my $a = stat_value($node, 'active_sessions');
		$max_active = $a if $a > $max_active;
		last if client_done($load) && $reads >= 100;
	}
}
$reader->{finish}->();
my ($acked, $sent) = finish_load($load);

my $e = check_client_errors($load, 'appends against per-partition eviction',
	allowed => [qr/^ERROR:  53400: too many active fleetlm sessions$/], may_end_early => 0);
my $full = $e->{count}{'ERROR:  53400: too many active fleetlm sessions'} // 0;
cmp_ok(scalar(@$acked), '>=', $clients * $per * 0.9,
	scalar(@$acked) . ' of ' . $clients * $per . " appends acknowledged ($full failed with 53400)");
is(scalar(@errors), 0, 'no read failed') or diag(join("\n", @errors[ 0 .. ($#errors < 10 ? $#errors : 9) ]));
is(scalar(@problems), 0, "reads never went backwards nor showed a gap ($reads reads)")
  or diag(join("\n", @problems[ 0 .. ($#problems < 20 ? $#problems : 19) ]));
cmp_ok($reads, '>=', 50, "the reader read during (and right after) the load ($reads reads)");
cmp_ok($max_active, '<=', 256, "the table never held more than 256 entries (at most $max_active seen)");
my ($lost, $checked) = verify_acked($node, $acked, $sent, $sessions, 'after the load');

diag("043_session_partitions: entries kept of 300 after crowding=$kept, acknowledged checked=$checked, lost=$lost, reads=$reads, "
	  . "read problems=" . scalar(@problems) . ", max active=$max_active, 53400 errors=$full");
$node->stop;
done_testing();

# Have all clients exited?
sub client_done
{
	my ($l) = @_;
	for my $h (@{ $l->{handles} })
	{
		return 0 if $h->pumpable;
	}
	return 1;
}
