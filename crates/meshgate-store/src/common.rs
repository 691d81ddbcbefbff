//! The [`Store`](crate::Store) methods both engines implement alike, written once as a
//! macro that each backend expands with its own types: the SQL they run comes from `sql`
//! (placeholders per engine), and each backend adds the methods whose SQL differs.
//!
//! The expansion site must have in scope: the `sql` items, the model types, the backend's
//! `ANNOTATION` and `insert_credits`, and `TryStreamExt`.

/// `impl Store for $store` over `$db`, running the shared statements in `$dialect`
/// (`sqlite` or `postgres`), numbering the usage INSERT's placeholders when `$numbered`;
/// `$own` holds the backend's own methods.
macro_rules! impl_store {
    ($store:ty, $db:ty, $dialect:ident, $numbered:literal, { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl crate::Store for $store {
            async fn create_project(&self, project: ProjectRecord) -> Result<ProjectRecord> {
                sqlx::query(INSERT_PROJECT.$dialect())
                    .bind(&project.id)
                    .bind(&project.name)
                    .bind(project.created_ms)
                    .bind(to_json("settings", &project.settings)?)
                    .execute(&self.pool)
                    .await?;
                Ok(project)
            }

            async fn get_project(&self, id: &str) -> Result<Option<ProjectRecord>> {
                let row = sqlx::query(GET_PROJECT.$dialect())
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(project_from_row).transpose()
            }

            async fn list_projects(&self) -> Result<Vec<ProjectRecord>> {
                let rows = sqlx::query(LIST_PROJECTS.$dialect())
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(project_from_row).collect()
            }

            async fn update_project(&self, project: ProjectRecord) -> Result<Option<ProjectRecord>> {
                let row = sqlx::query(UPDATE_PROJECT.$dialect())
                    .bind(&project.name)
                    .bind(to_json("settings", &project.settings)?)
                    .bind(&project.id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(project_from_row).transpose()
            }

            async fn create_key(&self, key: NewKey) -> Result<KeyRecord> {
                let policy = to_json("policy", &key.policy)?;
                bind_new_key(sqlx::query(INSERT_KEY.$dialect()), &key, &policy)
                    .execute(&self.pool)
                    .await?;
                Ok(KeyRecord::created(key))
            }

            async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>> {
                let row = sqlx::query(GET_KEY.$dialect())
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(key_from_row).transpose()
            }

            async fn list_keys(&self, project_id: Option<&str>) -> Result<Vec<KeyRecord>> {
                let mut q =
                    project_listing::<$db>(KEY_COLUMNS, "api_keys", project_id, "created_ms, id");
                let rows = q.build().fetch_all(&self.pool).await?;
                rows.iter().map(key_from_row).collect()
            }

            async fn revoke_key(&self, id: &str, at_ms: i64) -> Result<Option<KeyRecord>> {
                sqlx::query(REVOKE_KEY.$dialect())
                    .bind(at_ms)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                self.get_key(id).await
            }

            async fn active_keys(&self) -> Result<Vec<KeyRecord>> {
                let rows = sqlx::query(ACTIVE_KEYS.$dialect())
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(key_from_row).collect()
            }

            async fn update_key(
                &self,
                id: &str,
                name: &str,
                expires_ms: Option<i64>,
                policy: &Policy,
            ) -> Result<Option<KeyRecord>> {
                let row = sqlx::query(UPDATE_KEY.$dialect())
                    .bind(name)
                    .bind(expires_ms)
                    .bind(to_json("policy", policy)?)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(key_from_row).transpose()
            }

            async fn rotate_key(
                &self,
                id: &str,
                new_prefix: &str,
                new_secret_hash: &str,
                previous_expires_ms: Option<i64>,
                at_ms: i64,
            ) -> Result<Option<KeyRecord>> {
                let q = sqlx::query(ROTATE_KEY.$dialect());
                let row = bind_rotation(
                    q,
                    id,
                    new_prefix,
                    new_secret_hash,
                    previous_expires_ms,
                    at_ms,
                )
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(key_from_row).transpose()
            }

            async fn create_signing_key(&self, key: SigningKeyRecord) -> Result<SigningKeyRecord> {
                bind_signing_key(sqlx::query(INSERT_SIGNING_KEY.$dialect()), &key)
                    .execute(&self.pool)
                    .await?;
                Ok(key)
            }

            async fn list_signing_keys(&self, project_id: Option<&str>) -> Result<Vec<SigningKeyRecord>> {
                let mut q = project_listing::<$db>(
                    SIGNING_KEY_COLUMNS,
                    "signing_keys",
                    project_id,
                    "created_ms, id",
                );
                let rows = q.build().fetch_all(&self.pool).await?;
                rows.iter().map(signing_key_from_row).collect()
            }

            async fn revoke_signing_key(&self, id: &str, at_ms: i64) -> Result<Option<SigningKeyRecord>> {
                sqlx::query(REVOKE_SIGNING_KEY.$dialect())
                    .bind(at_ms)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                let row = sqlx::query(GET_SIGNING_KEY.$dialect())
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(signing_key_from_row).transpose()
            }

            async fn set_provider_credential(&self, credential: ProviderCredential) -> Result<()> {
                bind_credential(sqlx::query(UPSERT_CREDENTIAL.$dialect()), &credential)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn delete_provider_credential(&self, project_id: &str, provider: &str) -> Result<bool> {
                let done = sqlx::query(DELETE_CREDENTIAL.$dialect())
                    .bind(project_id)
                    .bind(provider)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn list_provider_credentials(
                &self,
                project_id: Option<&str>,
            ) -> Result<Vec<ProviderCredential>> {
                let mut q = project_listing::<$db>(
                    CREDENTIAL_COLUMNS,
                    "provider_credentials",
                    project_id,
                    "project_id, provider",
                );
                let rows = q.build().fetch_all(&self.pool).await?;
                rows.iter().map(credential_from_row).collect()
            }

            async fn add_credit_entry(&self, entry: CreditEntry) -> Result<()> {
                let mut conn = self.pool.acquire().await?;
                insert_credits(&mut conn, std::slice::from_ref(&entry)).await
            }

            async fn list_credit_entries(
                &self,
                project_id: &str,
                before_id: Option<&str>,
                limit: u32,
            ) -> Result<Vec<CreditEntry>> {
                let mut q = QueryBuilder::<$db>::new(format!(
                    "SELECT {CREDIT_COLUMNS} FROM credit_entries WHERE project_id = "
                ));
                q.push_bind(project_id.to_string());
                if let Some(b) = before_id {
                    q.push(" AND id < ").push_bind(b.to_string());
                }
                q.push(" ORDER BY id DESC LIMIT ")
                    .push_bind(page_limit(limit));
                let rows = q.build().fetch_all(&self.pool).await?;
                rows.iter().map(credit_from_row).collect()
            }

            async fn record_audit(&self, event: AuditEvent) -> Result<()> {
                let details = to_json("details", &event.details)?;
                bind_audit(sqlx::query(INSERT_AUDIT.$dialect()), &event, &details)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn list_audit(&self, filter: &AuditFilter, limit: u32) -> Result<Vec<AuditEvent>> {
                let mut q = QueryBuilder::<$db>::new(format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE 1=1"
                ));
                push_audit_filter(&mut q, filter);
                q.push(" ORDER BY id DESC LIMIT ")
                    .push_bind(page_limit(limit));
                let rows = q.build().fetch_all(&self.pool).await?;
                rows.iter().map(audit_from_row).collect()
            }

            async fn get_setting(&self, name: &str) -> Result<Option<String>> {
                Ok(sqlx::query_scalar(GET_SETTING.$dialect())
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn set_setting(&self, name: &str, value: &str) -> Result<()> {
                sqlx::query(SET_SETTING.$dialect())
                    .bind(name)
                    .bind(value)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn claim_batch_billing(
                &self,
                batch_id: &str,
                project_id: &str,
                at_ms: i64,
            ) -> Result<bool> {
                let done = sqlx::query(CLAIM_BATCH.$dialect())
                    .bind(batch_id)
                    .bind(project_id)
                    .bind(at_ms)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn record_owners(&self, owners: &[ResourceOwner]) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                for o in owners {
                    sqlx::query(RECORD_OWNER.$dialect())
                        .bind(&o.resource_id)
                        .bind(&o.project_id)
                        .bind(&o.kind)
                        .bind(o.created_ms)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn resource_owner(&self, resource_id: &str) -> Result<Option<String>> {
                Ok(sqlx::query_scalar(RESOURCE_OWNER.$dialect())
                    .bind(resource_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn release_batch_billing(&self, batch_id: &str) -> Result<()> {
                sqlx::query(RELEASE_BATCH.$dialect())
                    .bind(batch_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn insert_usage(&self, events: &[UsageEvent], debits: &[CreditEntry]) -> Result<()> {
                // Multi-row INSERTs of a few fixed sizes, largest first (see INSERT_ROWS). Events
                // and debits share one transaction, so a balance never shows a debit without its
                // event, nor the reverse; a duplicate id fails the whole batch.
                if let Some(written) = self.insert_usage_direct(events, debits) {
                    return written;
                }
                let json = event_json(events)?;
                let mut tx = self.pool.begin().await?;
                let mut rest = events.iter().zip(json.iter());
                let mut left = events.len();
                for (slot, &rows) in INSERT_ROWS.iter().enumerate() {
                    while left >= rows {
                        let mut q = sqlx::query(insert_usage_sql(slot, $numbered));
                        for (e, (usage_json, annotations_json)) in rest.by_ref().take(rows) {
                            q = bind_event(q, e, usage_json, annotations_json);
                        }
                        q.execute(&mut *tx).await?;
                        left -= rows;
                    }
                }
                insert_credits(&mut tx, debits).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn usage_ids_present(
                &self,
                ids: &[String],
            ) -> Result<std::collections::HashSet<String>> {
                let mut present = std::collections::HashSet::new();
                // Well under either engine's limit on bound parameters.
                for chunk in ids.chunks(1000) {
                    let mut q =
                        QueryBuilder::<$db>::new("SELECT id FROM usage_events WHERE id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(id.clone());
                    }
                    q.push(")");
                    for row in q.build().fetch_all(&self.pool).await? {
                        present.insert(row.try_get::<String, _>("id")?);
                    }
                }
                Ok(present)
            }

            async fn get_usage_event(&self, id: &str) -> Result<Option<UsageEvent>> {
                let mut q = QueryBuilder::<$db>::new("SELECT * FROM usage_events WHERE id = ");
                q.push_bind(id.to_string());
                q.build()
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(event_from_row)
                    .transpose()
            }

            async fn list_usage(&self, filter: &UsageFilter, limit: u32) -> Result<UsagePage> {
                let limit = page_limit(limit);
                let mut q = QueryBuilder::<$db>::new("SELECT * FROM usage_events WHERE 1=1");
                push_filter(&mut q, filter, &ANNOTATION);
                q.push(" ORDER BY id DESC LIMIT ").push_bind(limit + 1);
                let rows = q.build().fetch_all(&self.pool).await?;
                let events = rows
                    .iter()
                    .map(event_from_row)
                    .collect::<Result<Vec<_>>>()?;
                Ok(usage_page(events, limit))
            }

            async fn usage_summary(
                &self,
                filter: &UsageFilter,
                group_by: GroupBy,
            ) -> Result<Vec<SummaryRow>> {
                // Summed in Rust: SQLite would sum its decimal strings as floats, and both engines
                // then group (days in UTC, annotation values) and total exactly alike.
                let mut q = QueryBuilder::<$db>::new("SELECT ");
                push_summary_select(&mut q, &group_by, &ANNOTATION);
                push_filter(&mut q, filter, &ANNOTATION);
                let mut summary = Summary::default();
                let mut rows = q.build().fetch(&self.pool);
                while let Some(row) = rows.try_next().await? {
                    summary.add(&row, &group_by)?;
                }
                Ok(summary.rows())
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            $($own)*
        }
    };
}

pub(crate) use impl_store;
