INSERT INTO ragline.annotation_agreement (partition, scope, label, statistic, value, n)
VALUES (%(partition)s, %(scope)s, %(label)s, %(statistic)s, %(value)s, %(n)s)
