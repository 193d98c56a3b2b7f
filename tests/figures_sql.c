/* figures_sql.c -- prints every statement of src/figures.c, "name<TAB>sql" a
 * line, for tests/integration/t69_status_plans.sh to EXPLAIN. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>
#include <string.h>

#include "src/figures.h"

int main(void)
{
	for (const struct figure_query *q = figures_queries; q->name; q++) {
		if (strchr(q->sql, '\n') || strchr(q->sql, '\t')) {
			fprintf(stderr, "figures_sql: %s spans lines\n", q->name);
			return 1;
		}
		printf("%s\t%s\n", q->name, q->sql);
	}
	return 0;
}
