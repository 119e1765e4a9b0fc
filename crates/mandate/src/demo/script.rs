//! The demo's story, step by step. Each step does what a real operator, human or agent
//! would do over HTTP, prints what happened, and checks it happened as it should.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mandate_demo::bank::Bank;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Agent, Api, Mcp, Reply, claims};
use super::timeline::{Actor, Deviation, Timeline};

/// The tools the assistant's mandate grants, as the aggregated gateway names them.
const GRANTED: [&str; 5] = [
    "bank.get_balance",
    "bank.list_files",
    "bank.read_file",
    "bank.send_email",
    "bank.transfer",
];
/// How long a revocation may take to reach the gateway before the demo calls it a
/// failure (it is one propagation interval; typically well under a second).
const REVOCATION_DEADLINE: Duration = Duration::from_secs(10);

pub struct Script<'t> {
    api: Api,
    admin: String,
    bank: Arc<Bank>,
    bank_url: String,
    t: &'t mut Timeline,
}

/// Who is who, once registered.
struct Cast {
    alice: String,
    alice_token: String,
    assistant: Agent,
    assistant_api_token: String,
    sub_agent: Agent,
}

impl<'t> Script<'t> {
    pub fn new(
        base: &str,
        admin: String,
        bank: Arc<Bank>,
        bank_url: String,
        timeline: &'t mut Timeline,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            api: Api::new(base.to_owned())?,
            admin,
            bank,
            bank_url,
            t: timeline,
        })
    }

    pub async fn run(mut self) -> anyhow::Result<()> {
        let cast = self.setup().await?;
        let (mandate, recommend) = self.mandates(&cast).await?;

        self.t
            .section("Allowed and denied: the mandate's scope decides");
        let (token, mut session) = self
            .connect(Actor::Assistant, &cast.assistant, &mandate)
            .await?;
        self.allowed_and_denied(&mut session).await?;

        self.t
            .section("Approval: a high-impact call waits for Alice");
        self.approval(&cast, &mut session).await?;

        self.t
            .section("Proposal: under a recommend-only mandate, Alice executes");
        self.proposal(&cast, &recommend).await?;

        self.t
            .section("Delegation: the assistant hands a narrower task to a sub-agent");
        let mut delegated = self.delegation(&cast, &token).await?;

        self.t
            .section("Rollback: Alice undoes what the assistant did");
        self.rollback(&cast, &mandate).await?;

        self.t.section("Revocation: Alice ends the mandate");
        self.revocation(&cast, &mandate, &mut session, &mut delegated)
            .await?;

        self.t.section("The audit ledger");
        self.audit(&mandate).await?;
        Ok(())
    }

    async fn setup(&mut self) -> anyhow::Result<Cast> {
        let server = self
            .admin_call(
                Method::POST,
                "/v1/tool-servers",
                json!({"name": "bank", "transport": {"kind": "mcp_http", "url": self.bank_url}}),
                201,
                "register the bank",
            )
            .await?;
        self.t.step(
            Actor::Operator,
            "registers the demo bank as tool server `bank` (POST /v1/tool-servers)",
            format!("created {}", text(&server, "id")),
        );
        let transfer = self
            .admin_call(
                Method::POST,
                "/v1/tools",
                json!({
                    "server_id": at(&server, "/id"),
                    "name": "transfer",
                    "annotations": {"readOnlyHint": false, "destructiveHint": true, "openWorldHint": false},
                    "tags": ["financial"],
                    "amount_argument": "/amount_cents",
                    "compensation": mandate_demo::bank::transfer_compensation(),
                }),
                201,
                "catalog bank.transfer",
            )
            .await?;
        self.t.step(
            Actor::Operator,
            "catalogs bank.transfer as financial: tag `financial`, spend read from /amount_cents, \
             undone by a transfer back (from/to swapped, same amount_cents)",
            format!("risk tier {}", text(&transfer, "risk_tier")),
        );

        let alice = self
            .admin_call(
                Method::POST,
                "/v1/humans",
                json!({"display_name": "Alice", "email": "alice@example.com"}),
                201,
                "add Alice",
            )
            .await?;
        let alice_id = text(&alice, "id");
        let issued = self
            .admin_call(
                Method::POST,
                &format!("/v1/humans/{alice_id}/tokens"),
                json!({"label": "demo"}),
                201,
                "issue Alice's API token",
            )
            .await?;
        self.t.step(
            Actor::Operator,
            "adds Alice (alice@example.com) and issues her an API token",
            format!("{alice_id}; her token stays in memory, never printed"),
        );

        let mut assistant = Agent::generate("assistant-key")?;
        let mut sub_agent = Agent::generate("sub-agent-key")?;
        for (agent, name) in [(&mut assistant, "assistant"), (&mut sub_agent, "sub-agent")] {
            let created = self
                .admin_call(
                    Method::POST,
                    "/v1/agents",
                    json!({
                        "name": name,
                        "owner": alice_id,
                        "credentials": {"jwks": [agent.public_jwk()]},
                    }),
                    201,
                    "register an agent",
                )
                .await?;
            agent.id = text(&created, "id");
        }
        self.t.step(
            Actor::Operator,
            "registers two agents owned by Alice, each with its Ed25519 public key",
            format!(
                "assistant {}, sub-agent {}; private keys never leave the agents",
                assistant.id, sub_agent.id
            ),
        );
        let agent_token = self
            .admin_call(
                Method::POST,
                &format!("/v1/agents/{}/tokens", assistant.id),
                json!({"label": "demo"}),
                201,
                "issue the assistant's API token",
            )
            .await?;
        Ok(Cast {
            alice: alice_id,
            alice_token: text(&issued, "token"),
            assistant,
            assistant_api_token: text(&agent_token, "token"),
            sub_agent,
        })
    }

    /// The assistant asks for two mandates; Alice consents to both.
    async fn mandates(&mut self, cast: &Cast) -> anyhow::Result<(String, String)> {
        let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let main = json!({
            "agent_id": cast.assistant.id,
            "human_id": cast.alice,
            "intent": "Keep an eye on Alice's accounts and pay Bob back $250 for dinner",
            "scope": {"tools": GRANTED.iter().map(|t| json!({"tool": t})).collect::<Vec<_>>()},
            "data_ceiling": "internal",
            "mode": "execute",
            "budgets": {"max_calls": 20, "max_amount": 50_000, "currency": "USD"},
            "approval": {"tiers": ["high_impact"]},
            "max_delegation_depth": 1,
            "expires_at": expires,
        });
        let recommend = json!({
            "agent_id": cast.assistant.id,
            "human_id": cast.alice,
            "intent": "Draft the monthly note to the accountant; Alice decides whether it goes out",
            "scope": {"tools": [{"tool": "bank.send_email"}]},
            "data_ceiling": "internal",
            "mode": "recommend",
            "expires_at": expires,
        });
        let mut ids = Vec::new();
        for (terms, summary) in [
            (
                main,
                "5 bank tools (not delete_files), approval for high-impact calls, \
                 20 calls and $500.00 at most, delegation one hop deep, 1 hour",
            ),
            (recommend, "bank.send_email only, recommend mode, 1 hour"),
        ] {
            let requested = self
                .api
                .send(
                    Method::POST,
                    "/v1/mandates",
                    &cast.assistant_api_token,
                    Some(terms.clone()),
                )
                .await?;
            self.expect_status(&requested, 201, "the assistant requests a mandate")?;
            let id = text(&requested.body, "id");
            self.t.step(
                Actor::Assistant,
                format!(
                    "requests a mandate: “{}” ({summary})",
                    text(&terms, "intent")
                ),
                format!("{id}, status {}", text(&requested.body, "status")),
            );
            let consent = self
                .api
                .send(
                    Method::POST,
                    &format!("/v1/mandates/{id}/consent"),
                    &cast.alice_token,
                    Some(
                        json!({"decision": "granted", "terms_hash": at(&requested.body, "/terms_hash")}),
                    ),
                )
                .await?;
            self.expect_status(&consent, 200, "Alice consents")?;
            self.t.check(
                at(&consent.body, "/status") == "active",
                "Alice consents",
                "the mandate to be active",
                at(&consent.body, "/status"),
            )?;
            self.t.step(
                Actor::Alice,
                format!("reads the terms and consents to {id} (bound to its terms hash)"),
                "active",
            );
            ids.push(id);
        }
        let recommend = ids.pop().unwrap_or_default();
        let main = ids.pop().unwrap_or_default();
        Ok((main, recommend))
    }

    /// `agent` obtains a task token under `mandate` and opens an MCP session.
    async fn connect(
        &mut self,
        actor: Actor,
        agent: &Agent,
        mandate: &str,
    ) -> anyhow::Result<(String, Mcp)> {
        let issued = self.api.task_token(agent, mandate).await?;
        self.expect_status(&issued, 200, "a task token")?;
        let token = text(&issued.body, "access_token");
        self.t.step(
            actor,
            format!("gets a task token for {mandate} (private_key_jwt, client_credentials, resource …/mcp)"),
            format!(
                "issued: {}, valid {} s",
                at(&issued.body, "/token_type").as_str().unwrap_or("?"),
                at(&issued.body, "/expires_in")
            ),
        );
        let mut session = Mcp::new(&self.api, token.clone());
        let init = session.initialize().await?;
        self.expect_status(&init, 200, "MCP initialize")?;
        self.t.step(
            actor,
            "MCP initialize at /mcp (the gateway, all tool servers aggregated)",
            format!(
                "session open, protocol {}",
                at(&init.body, "/result/protocolVersion")
                    .as_str()
                    .unwrap_or("?")
            ),
        );
        Ok((token, session))
    }

    async fn allowed_and_denied(&mut self, session: &mut Mcp) -> anyhow::Result<()> {
        let listed = session.request("tools/list", json!({})).await?;
        let names = tool_names(&listed.body);
        self.t.check(
            names == GRANTED,
            "tools/list",
            format!("{GRANTED:?}"),
            format!("{names:?}"),
        )?;
        self.t.step(
            Actor::Assistant,
            "tools/list",
            format!(
                "sees {} (delete_files is not in scope, so not shown)",
                names.join(", ")
            ),
        );

        let balance = session
            .call_tool("bank.get_balance", json!({"account": "alice-checking"}))
            .await?;
        self.t.check(
            is_success(&balance.body),
            "an allowed call",
            "a result",
            summary(&balance.body),
        )?;
        self.t.step(
            Actor::Assistant,
            "tools/call bank.get_balance {account: alice-checking}",
            format!("ALLOWED (in scope, read tier): {}", summary(&balance.body)),
        );

        let before = self.bank.files().len();
        let delete = session
            .call_tool(
                "bank.delete_files",
                json!({"paths": ["/home/alice/todo.txt", "/shared/payroll/salaries.csv"]}),
            )
            .await?;
        self.t.check(
            error_code(&delete.body) == Some(-32010)
                && at(&delete.body, "/error/data/approval_id").is_null()
                && self.bank.files().len() == before,
            "an out-of-scope call",
            "error -32010, nothing deleted",
            summary(&delete.body),
        )?;
        self.t.step(
            Actor::Assistant,
            "tools/call bank.delete_files {paths: [2 files]} (mass deletion)",
            format!(
                "DENIED, answered like an unknown tool (the agent learns nothing): {}",
                summary(&delete.body)
            ),
        );
        self.t
            .note("the bank still holds every file: the call never reached it");
        Ok(())
    }

    async fn approval(&mut self, cast: &Cast, session: &mut Mcp) -> anyhow::Result<()> {
        let arguments = json!({"from": "alice-checking", "to": "bob-checking",
                               "amount_cents": 25_000, "memo": "dinner"});
        let held = session
            .call_tool("bank.transfer", arguments.clone())
            .await?;
        let approval = at(&held.body, "/error/data/approval_id")
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.t.check(
            !approval.is_empty() && self.bank.transfers().is_empty(),
            "a high-impact call",
            "held for approval (error -32010 with an approval id), no transfer",
            summary(&held.body),
        )?;
        self.t.step(
            Actor::Assistant,
            "tools/call bank.transfer $250.00 alice-checking → bob-checking",
            format!("HELD FOR APPROVAL {approval} (high-impact tier; nothing moved yet)"),
        );

        let pending = self
            .api
            .send(
                Method::GET,
                "/v1/approvals?status=pending",
                &cast.alice_token,
                None,
            )
            .await?;
        self.expect_status(&pending, 200, "Alice lists pending approvals")?;
        let item = at(&pending.body, "/items/0");
        self.t.check(
            at(item, "/id") == approval.as_str() && *at(item, "/arguments") == arguments,
            "Alice lists pending approvals",
            format!("{approval} with the exact arguments"),
            item,
        )?;
        self.t.step(
            Actor::Alice,
            "looks at her pending approvals (GET /v1/approvals?status=pending)",
            format!(
                "{approval}: {} {} tier {}",
                text(item, "tool"),
                at(item, "/arguments"),
                text(item, "risk_tier")
            ),
        );

        let decided = self
            .api
            .send(
                Method::POST,
                &format!("/v1/approvals/{approval}/approve"),
                &cast.alice_token,
                Some(json!({"comment": "yes, pay Bob back"})),
            )
            .await?;
        self.expect_status(&decided, 200, "the approval")?;
        self.t.step(
            Actor::ScriptAsAlice,
            format!("approves {approval}"),
            format!("{} — [the SCRIPT approves as Alice: in real life Alice clicks Approve in the console, or her client calls POST /v1/approvals/{{id}}/approve]", text(&decided.body, "status")),
        );

        let retried = session
            .call_tool("bank.transfer", arguments.clone())
            .await?;
        let transfers = self.bank.transfers();
        self.t.check(
            is_success(&retried.body) && transfers.len() == 1,
            "the approved retry",
            "the transfer to go through once",
            summary(&retried.body),
        )?;
        self.t.step(
            Actor::Assistant,
            "retries bank.transfer with the same arguments",
            format!("ALLOWED (approved, used once): {}", summary(&retried.body)),
        );
        let again = session.call_tool("bank.transfer", arguments).await?;
        self.t.check(
            !at(&again.body, "/error/data/approval_id").is_null()
                && at(&again.body, "/error/data/approval_id") != approval.as_str()
                && self.bank.transfers().len() == 1,
            "a second retry",
            "a new approval (an approval is used once)",
            summary(&again.body),
        )?;
        self.t.step(
            Actor::Assistant,
            "tries the same transfer a second time",
            "HELD again under a new approval: an approval is good for exactly one call",
        );
        Ok(())
    }

    async fn proposal(&mut self, cast: &Cast, recommend: &str) -> anyhow::Result<()> {
        let (_, mut session) = self
            .connect(Actor::Assistant, &cast.assistant, recommend)
            .await?;
        let email = json!({"to": "accountant@example.com", "subject": "October statements",
                           "body": "Hi, the October statements are attached. — Alice's assistant"});
        let proposed = session.call_tool("bank.send_email", email).await?;
        let proposal = at(&proposed.body, "/error/data/proposal_id")
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.t.check(
            !proposal.is_empty() && self.bank.outbox().is_empty(),
            "a call under a recommend-only mandate",
            "a proposal (error -32010 with a proposal id), nothing sent",
            summary(&proposed.body),
        )?;
        self.t.step(
            Actor::Assistant,
            "tools/call bank.send_email to accountant@example.com (external transfer)",
            format!("PROPOSAL {proposal} recorded; nothing was executed, the outbox is empty"),
        );
        let executed = self
            .api
            .send(
                Method::POST,
                &format!("/v1/proposals/{proposal}/execute"),
                &cast.alice_token,
                None,
            )
            .await?;
        self.expect_status(&executed, 200, "Alice executes the proposal")?;
        let outbox = self.bank.outbox();
        self.t.check(
            at(&executed.body, "/status") == "executed" && outbox.len() == 1,
            "Alice executes the proposal",
            "status executed and one message in the outbox",
            at(&executed.body, "/status"),
        )?;
        self.t.step(
            Actor::Alice,
            format!("reviews {proposal} and executes it (POST /v1/proposals/{{id}}/execute)"),
            "executed by Mandate on Alice's say-so",
        );
        let first = outbox
            .first()
            .map(|m| format!("to {}, “{}”", m.to, m.subject))
            .unwrap_or_default();
        self.t.step(
            Actor::Bank,
            "outbox (observed in-process)",
            format!("1 message: {first}"),
        );
        Ok(())
    }

    async fn delegation(&mut self, cast: &Cast, assistant_token: &str) -> anyhow::Result<Mcp> {
        let exchanged = self
            .api
            .exchange(&cast.sub_agent, assistant_token, "bank.get_balance")
            .await?;
        self.expect_status(&exchanged, 200, "the token exchange")?;
        let token = text(&exchanged.body, "access_token");
        let c = claims(&token);
        self.t.check(
            at(&c, "/act/sub") == cast.sub_agent.id.as_str()
                && at(&c, "/act/act/sub") == cast.assistant.id.as_str(),
            "the token exchange",
            "act = {sub-agent, act: {assistant}}",
            at(&c, "/act"),
        )?;
        self.t.step(
            Actor::SubAgent,
            "exchanges the assistant's token for its own (RFC 8693: subject_token + actor_token), scope bank.get_balance",
            format!(
                "issued: scope `{}`, acting for {} via {} → {}",
                text(&c, "scope"),
                text(&c, "sub"),
                cast.assistant.id,
                cast.sub_agent.id
            ),
        );
        let mut session = Mcp::new(&self.api, token);
        let init = session.initialize().await?;
        self.expect_status(&init, 200, "the sub-agent's MCP initialize")?;
        let listed = session.request("tools/list", json!({})).await?;
        let names = tool_names(&listed.body);
        self.t.check(
            names == ["bank.get_balance"],
            "the sub-agent's tools/list",
            "[bank.get_balance]",
            format!("{names:?}"),
        )?;
        self.t.step(
            Actor::SubAgent,
            "MCP initialize, tools/list",
            format!("sees {}", names.join(", ")),
        );
        let balance = session
            .call_tool("bank.get_balance", json!({"account": "bob-checking"}))
            .await?;
        self.t.check(
            is_success(&balance.body),
            "the sub-agent's get_balance",
            "a result",
            summary(&balance.body),
        )?;
        self.t.step(
            Actor::SubAgent,
            "tools/call bank.get_balance {account: bob-checking}",
            format!("ALLOWED (delegated): {}", summary(&balance.body)),
        );
        let transfer = session
            .call_tool(
                "bank.transfer",
                json!({"from": "alice-savings", "to": "carol-checking", "amount_cents": 100}),
            )
            .await?;
        self.t.check(
            error_code(&transfer.body) == Some(-32010)
                && at(&transfer.body, "/error/data/approval_id").is_null()
                && self.bank.transfers().len() == 1,
            "the sub-agent's transfer",
            "error -32010 (outside the narrowed scope)",
            summary(&transfer.body),
        )?;
        self.t.step(
            Actor::SubAgent,
            "tools/call bank.transfer $1.00 alice-savings → carol-checking",
            format!(
                "DENIED, outside the delegated scope: {}",
                summary(&transfer.body)
            ),
        );
        Ok(session)
    }

    async fn revocation(
        &mut self,
        cast: &Cast,
        mandate: &str,
        assistant: &mut Mcp,
        sub_agent: &mut Mcp,
    ) -> anyhow::Result<()> {
        let revoked = self
            .api
            .send(
                Method::POST,
                &format!("/v1/mandates/{mandate}/revoke"),
                &cast.alice_token,
                None,
            )
            .await?;
        self.expect_status(&revoked, 200, "the revocation")?;
        self.t.step(
            Actor::Alice,
            format!("revokes {mandate} (POST /v1/mandates/{{id}}/revoke)"),
            text(&revoked.body, "status"),
        );
        for (actor, session, account) in [
            (Actor::Assistant, assistant, "alice-checking"),
            (Actor::SubAgent, sub_agent, "bob-checking"),
        ] {
            let start = Instant::now();
            let status = loop {
                let reply = session
                    .call_tool("bank.get_balance", json!({"account": account}))
                    .await?;
                if reply.status == 401 || start.elapsed() > REVOCATION_DEADLINE {
                    break reply.status;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            self.t.check(
                status == 401,
                "a call after revocation",
                "HTTP 401",
                format!("HTTP {status} after {:?}", start.elapsed()),
            )?;
            self.t.step(
                actor,
                format!("tools/call bank.get_balance {{account: {account}}}"),
                format!(
                    "REFUSED: HTTP 401, the token died with its mandate (within {} ms)",
                    start.elapsed().as_millis()
                ),
            );
        }
        Ok(())
    }

    /// Alice rolls the mandate back: the $250.00 transfer is undone by the transfer
    /// back, through the gateway; a second rollback repeats nothing.
    async fn rollback(&mut self, cast: &Cast, mandate: &str) -> anyhow::Result<()> {
        let bob = self.bank.balance("bob-checking");
        let path = format!("/v1/mandates/{mandate}/rollback");
        let first = self
            .api
            .send(Method::POST, &path, &cast.alice_token, None)
            .await?;
        self.expect_status(&first, 200, "the rollback")?;
        let steps = at(&first.body, "/steps")
            .as_array()
            .cloned()
            .unwrap_or_default();
        let transfers = self.bank.transfers();
        let reversed = transfers.last().is_some_and(|t| {
            t.from == "bob-checking" && t.to == "alice-checking" && t.amount_cents == 25_000
        });
        self.t.check(
            at(&first.body, "/complete").as_bool() == Some(true)
                && steps.len() == 1
                && reversed
                && self.bank.balance("bob-checking") == bob.map(|b| b - 25_000),
            "the rollback",
            "one step: $250.00 back from bob-checking to alice-checking",
            format!("{} and the transfers {transfers:?}", first.body),
        )?;
        self.t.step(
            Actor::Alice,
            format!("rolls back {mandate} (POST /v1/mandates/{{id}}/rollback)"),
            format!(
                "the transfer (event #{}) undone by bank.transfer $250.00 bob-checking → \
                 alice-checking, decided and forwarded by the gateway as a rollback \
                 (rollback.step #{} in the ledger, chained to it)",
                at(&first.body, "/steps/0/call_seq"),
                at(&first.body, "/steps/0/event_seq"),
            ),
        );
        let again = self
            .api
            .send(Method::POST, &path, &cast.alice_token, None)
            .await?;
        self.expect_status(&again, 200, "the second rollback")?;
        self.t.check(
            at(&again.body, "/steps/0/status").as_str() == Some("already_done")
                && self.bank.transfers().len() == transfers.len(),
            "a second rollback",
            "nothing repeated",
            again.body.to_string(),
        )?;
        self.t.step(
            Actor::Alice,
            "rolls back again",
            "the step is already done: nothing repeated",
        );
        Ok(())
    }

    async fn audit(&mut self, mandate: &str) -> anyhow::Result<()> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut after: Option<u64> = None;
        for _ in 0..100 {
            let mut path = format!("/v1/audit?mandate={mandate}&limit=1000");
            if let Some(a) = after {
                path.push_str(&format!("&after={a}"));
            }
            let page = self.api.send(Method::GET, &path, &self.admin, None).await?;
            self.expect_status(&page, 200, "the audit query")?;
            for event in at(&page.body, "/items").as_array().into_iter().flatten() {
                *counts.entry(text(event, "kind")).or_default() += 1;
            }
            match at(&page.body, "/next").as_u64() {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let total: usize = counts.values().sum();
        let expected = [
            "consent.granted",
            "approval.requested",
            "approval.granted",
            "tool.called",
            "rollback.step",
            "mandate.revoked",
        ];
        let missing: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|k| !counts.contains_key(*k))
            .collect();
        self.t.check(
            missing.is_empty(),
            "the audit ledger",
            format!("events of types {expected:?}"),
            format!("none of {missing:?}; found {counts:?}"),
        )?;
        self.t.step(
            Actor::Operator,
            format!("reads the mandate's audit trail (GET /v1/audit?mandate={mandate}; `mandate audit trace {mandate}` draws it as a tree)"),
            format!("{total} events, hash-chained, arguments stored as hashes only:"),
        );
        for (kind, n) in &counts {
            self.t.note(format!("{n:>4}  {kind}"));
        }
        Ok(())
    }

    /// An admin API call that must answer `want`: its body.
    async fn admin_call(
        &self,
        method: Method,
        path: &str,
        body: Value,
        want: u16,
        what: &str,
    ) -> anyhow::Result<Value> {
        let reply = self.api.send(method, path, &self.admin, Some(body)).await?;
        self.expect_status(&reply, want, what)?;
        Ok(reply.body)
    }

    fn expect_status(&self, reply: &Reply, want: u16, what: &str) -> Result<(), Deviation> {
        self.t.check(
            reply.status == want,
            what,
            format!("HTTP {want}"),
            format!("HTTP {} {}", reply.status, reply.body),
        )
    }
}

/// The value at a JSON pointer, `Null` when absent.
fn at<'v>(v: &'v Value, pointer: &str) -> &'v Value {
    static NULL: Value = Value::Null;
    v.pointer(pointer).unwrap_or(&NULL)
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn tool_names(response: &Value) -> Vec<String> {
    let mut names: Vec<String> = at(response, "/result/tools")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| at(t, "/name").as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn error_code(response: &Value) -> Option<i64> {
    at(response, "/error/code").as_i64()
}

fn is_success(response: &Value) -> bool {
    at(response, "/result").is_object() && at(response, "/result/isError") != true
}

/// A JSON-RPC response in a line: the tool's text, or the error's code and message.
fn summary(response: &Value) -> String {
    if let Some(error) = response.get("error") {
        return format!(
            "error {}: {}",
            at(error, "/code"),
            at(error, "/message").as_str().unwrap_or_default()
        );
    }
    let text = at(response, "/result/content")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| at(c, "/text").as_str())
        .collect::<Vec<_>>()
        .join(" ");
    if at(response, "/result/isError") == true {
        format!("tool error: {text}")
    } else if text.is_empty() {
        response.to_string()
    } else {
        text
    }
}
