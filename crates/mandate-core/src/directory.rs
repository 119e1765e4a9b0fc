use mandate_domain::{Agent, AgentStatus, Human, Principal};
use mandate_store::{AgentFilter, HumanFilter, Page, PageRequest};
use mandate_types::{AgentId, HumanId, TenantId};

use crate::input::{check_credentials, check_email, check_label, check_labels, check_text};
use crate::{AgentUpdate, CoreError, NewAgent, NewHuman, Service};

/// The most sponsors an agent may have.
pub const MAX_SPONSORS: usize = 16;

impl Service {
    pub async fn create_human(
        &self,
        caller: &Principal,
        new: NewHuman,
    ) -> Result<Human, CoreError> {
        let tenant = self.require_admin(caller)?;
        let display_name = new.display_name.trim();
        if display_name.is_empty() {
            return Err(CoreError::invalid("`display_name` must not be empty"));
        }
        check_text("display_name", display_name, 200)?;
        let email = new.email.trim().to_ascii_lowercase();
        check_email(&email)?;
        if new.groups.len() > 64 {
            return Err(CoreError::invalid("`groups` may hold at most 64 groups"));
        }
        for g in &new.groups {
            check_label("groups", g, true)?;
        }
        let human = Human {
            id: HumanId::generate(),
            tenant_id: tenant,
            display_name: display_name.to_owned(),
            email,
            groups: new.groups,
            created_at: self.clock.now(),
        };
        self.store.create_human(&human).await?;
        Ok(human)
    }

    /// A human, visible to admins and to the human themself.
    pub async fn human(&self, caller: &Principal, id: HumanId) -> Result<Human, CoreError> {
        let visible = match caller {
            Principal::Admin { .. } => true,
            Principal::Human { id: me, .. } => *me == id,
            Principal::Agent { .. } => false,
        };
        let found = if visible {
            self.store.human(caller.tenant(), id).await?
        } else {
            None
        };
        found.ok_or_else(|| CoreError::not_found("human", id))
    }

    pub async fn list_humans(
        &self,
        caller: &Principal,
        filter: HumanFilter,
        page: PageRequest,
    ) -> Result<Page<Human>, CoreError> {
        let tenant = self.require_admin(caller)?;
        let filter = HumanFilter {
            email: filter.email.map(|e| e.trim().to_ascii_lowercase()),
            ..filter
        };
        Ok(self.store.list_humans(tenant, &filter, &page).await?)
    }

    pub async fn create_agent(
        &self,
        caller: &Principal,
        new: NewAgent,
    ) -> Result<Agent, CoreError> {
        let tenant = self.require_admin(caller)?;
        check_label("name", &new.name, true)?;
        check_credentials(&new.credentials)?;
        check_labels(&new.labels)?;
        if self.store.human(tenant, new.owner).await?.is_none() {
            return Err(CoreError::invalid(format!(
                "`owner`: human `{}` does not exist",
                new.owner
            )));
        }
        let sponsors = self
            .checked_sponsors(tenant, new.owner, new.sponsors)
            .await?;
        let agent = Agent {
            id: AgentId::generate(),
            tenant_id: tenant,
            name: new.name,
            owner: new.owner,
            sponsors,
            credentials: new.credentials,
            labels: new.labels,
            status: AgentStatus::Active,
            created_at: self.clock.now(),
        };
        self.store.create_agent(&agent).await?;
        Ok(agent)
    }

    /// An agent, visible to admins, to its owner and sponsors, and to itself.
    pub async fn agent(&self, caller: &Principal, id: AgentId) -> Result<Agent, CoreError> {
        let agent = self.store.agent(caller.tenant(), id).await?;
        let visible = |a: &Agent| match caller {
            Principal::Admin { .. } => true,
            Principal::Human { id: me, .. } => a.owner == *me || a.sponsors.contains(me),
            Principal::Agent { id: me, .. } => a.id == *me,
        };
        agent
            .filter(visible)
            .ok_or_else(|| CoreError::not_found("agent", id))
    }

    /// An agent's name, for labelling something the caller was already allowed to see
    /// (a held call, a delegation tree); `None` when it cannot be read.
    pub async fn agent_name(&self, tenant: TenantId, id: AgentId) -> Option<String> {
        self.store
            .agent(tenant, id)
            .await
            .ok()
            .flatten()
            .map(|a| a.name)
    }

    /// A person's display name, on the same terms as [`Service::agent_name`].
    pub async fn human_name(&self, tenant: TenantId, id: HumanId) -> Option<String> {
        self.store
            .human(tenant, id)
            .await
            .ok()
            .flatten()
            .map(|h| h.display_name)
    }

    /// Whether the store answers (for `/readyz`).
    pub async fn ping_store(&self) -> Result<(), CoreError> {
        Ok(self.store.ping().await?)
    }

    /// Which store backend this is (`sqlite`, `postgres`), for readiness and logs.
    pub fn store_backend(&self) -> &'static str {
        self.store.backend()
    }

    pub async fn update_agent(
        &self,
        caller: &Principal,
        id: AgentId,
        update: AgentUpdate,
    ) -> Result<Agent, CoreError> {
        self.require_admin(caller)?;
        let mut agent = self.agent(caller, id).await?;
        if let Some(credentials) = update.credentials {
            check_credentials(&credentials)?;
            agent.credentials = credentials;
        }
        if let Some(labels) = update.labels {
            check_labels(&labels)?;
            agent.labels = labels;
        }
        if let Some(status) = update.status {
            agent.status = status;
        }
        if let Some(sponsors) = update.sponsors {
            agent.sponsors = self
                .checked_sponsors(agent.tenant_id, agent.owner, sponsors)
                .await?;
        }
        self.store.update_agent(&agent).await?;
        Ok(agent)
    }

    /// Sponsors as stored: people of the tenant, at most 16, not the owner, each once
    /// (in the order given).
    async fn checked_sponsors(
        &self,
        tenant: TenantId,
        owner: HumanId,
        asked: Vec<HumanId>,
    ) -> Result<Vec<HumanId>, CoreError> {
        if asked.len() > MAX_SPONSORS {
            return Err(CoreError::invalid(format!(
                "`sponsors` may name at most {MAX_SPONSORS} people"
            )));
        }
        let mut sponsors: Vec<HumanId> = Vec::with_capacity(asked.len());
        for id in asked {
            if id == owner {
                return Err(CoreError::invalid(
                    "`sponsors`: the owner is accountable already; name other people",
                ));
            }
            if sponsors.contains(&id) {
                return Err(CoreError::invalid(format!(
                    "`sponsors`: `{id}` is named twice"
                )));
            }
            if self.store.human(tenant, id).await?.is_none() {
                return Err(CoreError::invalid(format!(
                    "`sponsors`: human `{id}` does not exist"
                )));
            }
            sponsors.push(id);
        }
        Ok(sponsors)
    }

    /// Agents: all of the tenant's for admins; for a human, those they own or sponsor
    /// (`owner` narrows to those they own).
    pub async fn list_agents(
        &self,
        caller: &Principal,
        mut filter: AgentFilter,
        page: PageRequest,
    ) -> Result<Page<Agent>, CoreError> {
        match caller {
            Principal::Admin { .. } => {}
            Principal::Human { id, .. } => {
                if filter.owner.is_some_and(|asked| asked != *id)
                    || filter.accountable.is_some_and(|asked| asked != *id)
                {
                    return Ok(Page::empty());
                }
                filter.accountable = Some(*id);
            }
            Principal::Agent { .. } => {
                return Err(CoreError::Forbidden(
                    "agents may not list agents".to_owned(),
                ));
            }
        }
        Ok(self
            .store
            .list_agents(caller.tenant(), &filter, &page)
            .await?)
    }
}
