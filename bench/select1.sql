-- Baseline: the cost of a round trip and a trivial statement.
SELECT 1;
