# 026_backend_fds.pl: a backend that led a flush round (it wrote and
# fdatasynced the WAL itself) does not keep a WAL segment open once its
# transaction ends, so an idle connection never keeps a removed segment's
# space allocated.  While a transaction runs, the segment may stay open.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FleetlmTest;

my $node = fleetlm_node('fds');
create_sessions($node, 'fd', 1);

sub wal_fds
{
	my ($pid) = @_;
	opendir my $d, "/proc/$pid/fd" or die "/proc/$pid/fd: $!";
	my $n = 0;
	for my $fd (readdir $d)
	{
		my $target = readlink("/proc/$pid/fd/$fd") // '';
		$n++ if $target =~ m{/fleetlm_wal/[0-9A-F]{16}};
	}
	closedir $d;
	return $n;
}

my $s = $node->background_psql('postgres');
my $pid = $s->query_safe('SELECT pg_backend_pid()');
$pid =~ s/\D//g;
# appends one by one: this backend leads its own flush rounds (nothing else
# is flushing), so it opens the segment itself
$s->query_safe("BEGIN; SELECT fleetlm.append('fd-1', 'u-1', 'text', '{}') FROM generate_series(1, 20);");
my $during = wal_fds($pid);
$s->query_safe('COMMIT;');
is(wal_fds($pid), 0, "no WAL segment open in an idle backend after its transaction ($during open during it)");
$s->query_safe("SELECT fleetlm.append('fd-1', 'u-1', 'text', '{}');");
is(wal_fds($pid), 0, 'nor after an autocommit append');
is($during, 1, "the backend led its own rounds: the segment was open while the transaction ran");
my $fsyncs = stat_value($node, 'fsyncs');
cmp_ok($fsyncs, '>=', 21, "the appends were flushed ($fsyncs rounds)");
$s->quit;
$node->stop;
done_testing();
