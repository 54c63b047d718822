# 019_delete_race.pl: delete_session racing appends.  Four clients append
# to twelve sessions while another connection deletes six of them, one
# after the other, under the load.  Then:
# - appends to a deleted session fail with P0002 "has been deleted" or
#   "does not exist", and nothing else fails; once a client saw its session
#   deleted, none of its later appends to it succeeds;
# - every acknowledged append of a session not deleted is there exactly
#   once, seqs gapless;
# - after flush() a deleted session is gone from fleetlm.sessions,
#   fleetlm.messages and fleetlm.cursors, and cannot be read;
# - an id may be used again once deleted, also right after the deletion:
#   the new session starts again at seq 1, without the old messages.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FleetlmTest;

my $node = fleetlm_node('delrace');
my $sessions = create_sessions($node, 'dr', 12);
my @deleted = @$sessions[ 0 .. 5 ];
my @live = @$sessions[ 6 .. 11 ];
my %is_deleted = map { $_ => 1 } @deleted;

# a message and a read cursor in each session before the load
fleet_query($node, "SELECT fleetlm.append('dr-' || i, 'u-' || i, 'text', jsonb_build_object('m', 'pre-' || i)),"
	  . " fleetlm.mark_read('dr-' || i, 'u-' || i, 1) FROM generate_series(1, 12) i");
my %pre = map { ("pre-$_" => "dr-$_") } 1 .. 12;
my @pre_acked = map { [ 1, "pre-$_", "dr-$_" ] } 7 .. 12;

my $clients = 4;
my $per = 800;
my $load = start_load($node, sessions => $sessions, clients => $clients, per_client => $per,
	tag => 'D', on_error_stop => 0, verbose => 1);
my $k = 0;
for my $s (@deleted)
{
	$k++;
	wait_acked($load, 250 * $k);
	is(fleet_query($node, "SELECT fleetlm.delete_session('$s')"), 't', "$s deleted under load");
}
my ($acked, $sent) = finish_load($load);

# errors: only the deleted sessions', with P0002
my $e = check_client_errors($load, 'appends racing deletions',
	allowed => [qr/^ERROR:  P0002: fleetlm session "dr-[1-6]" (has been deleted|does not exist)$/],
	may_end_early => 0);
my %failed = %{ $load->{failed} };
is(scalar(@$acked) + scalar(keys %failed), $clients * $per, 'every append was acknowledged or failed');
my @misplaced = grep {
	!$is_deleted{ $sent->{$_} } || $failed{$_} !~ /"\Q$sent->{$_}\E"/
} keys %failed;
is(scalar(@misplaced), 0, 'only appends to deleted sessions failed, each naming its session')
  or diag(join("\n", map { "$_ ($sent->{$_}): $failed{$_}" } @misplaced[ 0 .. ($#misplaced < 9 ? $#misplaced : 9) ]));
my %failed_per = map { $_ => 0 } @deleted;
$failed_per{ $sent->{$_} }++ for keys %failed;
is(scalar(grep { $failed_per{$_} > 0 } @deleted), 6, 'appends to each deleted session failed: the deletions hit the load mid-way')
  or diag(join(', ', map { "$_: $failed_per{$_}" } @deleted));

# a client that saw its session deleted never got an append into it again
my $resurrected = 0;
my %acked_marker = map { $_->[1] => 1 } @$acked;
for my $c (1 .. $clients)
{
	my %gone;
	my $markers = $load->{line_marker}[ $c - 1 ];
	for my $line (sort { $a <=> $b } keys %$markers)
	{
		my $m = $markers->{$line};
		my $s = $sent->{$m};
		if (exists $failed{$m})
		{
			$gone{$s} = 1;
		}
		elsif ($gone{$s} && $acked_marker{$m})
		{
			diag("client $c: $m acknowledged in $s after an append to it failed");
			$resurrected++;
		}
	}
}
is($resurrected, 0, 'after a failed append to a deleted session, no later append to it succeeded');

# the sessions not deleted keep everything
my @live_acked = grep { !$is_deleted{ $_->[2] } } @$acked;
my %all_sent = (%$sent, %pre);
my ($lost, $checked) = verify_acked($node, [ @pre_acked, @live_acked ], \%all_sent, \@live,
	'the sessions not deleted');
is(fleet_query($node, "SELECT count(*) FROM fleetlm.cursors WHERE session_id IN ('" . join("','", @live) . "')"),
	'6', 'they keep their read cursors');

# the deleted ones are gone everywhere (verify_acked ran flush())
my $dlist = "'" . join("','", @deleted) . "'";
is(fleet_query($node, "SELECT (SELECT count(*) FROM fleetlm.sessions WHERE session_id IN ($dlist))"
	  . " || ',' || (SELECT count(*) FROM fleetlm.messages WHERE session_id IN ($dlist))"
	  . " || ',' || (SELECT count(*) FROM fleetlm.cursors WHERE session_id IN ($dlist))"),
	'0,0,0', 'after flush() the deleted sessions have no row in sessions, messages or cursors');
my $unreadable = 0;
for my $s (@deleted)
{
	for my $sql ("SELECT * FROM fleetlm.messages('$s')", "SELECT fleetlm.last_seq('$s')",
		"SELECT fleetlm.append('$s', 'u-1', 'text', '{}')")
	{
		my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
		$unreadable++ if $ret != 0 && $out eq ''
		  && $err =~ /^psql:<stdin>:\d+: ERROR:  P0002: fleetlm session "\Q$s\E" (has been deleted|does not exist)\n/;
	}
}
is($unreadable, 18, 'a deleted session cannot be read nor appended to (P0002)');

# an id used again: after the deletion was applied ...
is(fleet_query($node, "SELECT fleetlm.create_session('u-1', 'a-1', session_id => 'dr-1')"), 'dr-1',
	'dr-1 created again');
is(fleet_query($node, "SELECT fleetlm.append('dr-1', 'u-1', 'text', '{\"m\": \"new-1\"}')"), '1',
	'the new dr-1 starts again at seq 1');
# ... and right after it, before the applier carried it out
is(fleet_query($node, "SELECT fleetlm.delete_session('dr-7')"), 't', 'dr-7 deleted');
is(fleet_query($node, "SELECT fleetlm.create_session('u-7', 'a-7', session_id => 'dr-7')"), 'dr-7',
	'and created again at once');
is(fleet_query($node, "SELECT fleetlm.append('dr-7', 'u-7', 'text', '{\"m\": \"new-7\"}')"), '1',
	'the new dr-7 starts again at seq 1');
for my $s ('dr-1', 'dr-7')
{
	(my $n = $s) =~ s/dr-//;
	is(fleet_query($node, "SELECT string_agg(seq || ':' || (content->>'m'), ',') FROM fleetlm.messages('$s')"),
		"1:new-$n", "messages() of the new $s holds only its own message");
	is(fleet_query($node, "SELECT fleetlm.last_seq('$s')"), '1', "last_seq() of the new $s is 1");
}
fleet_query($node, 'SELECT fleetlm.flush()');
is(fleet_query($node, "SELECT string_agg(session_id || ':' || seq || ':' || (content->>'m'), ',' ORDER BY session_id)"
	  . " FROM fleetlm.messages WHERE session_id IN ('dr-1', 'dr-7')"),
	'dr-1:1:new-1,dr-7:1:new-7', 'after flush() the table holds only the new messages of the ids used again');
is(fleet_query($node, "SELECT count(*) FROM fleetlm.cursors WHERE session_id IN ('dr-1', 'dr-7')"), '0',
	'and no old read cursor');

my $nfailed = scalar(keys %failed);
my $gone = grep { /has been deleted/ } values %failed;
diag("019_delete_race: deletions under load=6, acknowledged=" . scalar(@$acked) . ", failed on deleted sessions=$nfailed"
	  . " (has been deleted=$gone, does not exist=" . ($nfailed - $gone) . "), "
	  . "acknowledged checked=$checked, lost=$lost, resurrected=$resurrected, unexplained client errors=0");
$node->stop;
done_testing();
