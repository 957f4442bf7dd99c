//! SLA reports: `GET /admin/reports/sla` and `nines report sla`, as JSON, CSV or Markdown.
