//! The scale-out test's parts: a PostgreSQL cluster of its own, a TCP proxy that can
//! cut a replica's database connections, HAProxy, and an MCP upstream that remembers
//! every call it was sent.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use async_trait::async_trait;
use mandate_demo::mcp_server::{
    CallContext, ToolAnnotations, ToolDef, ToolError, ToolResult, ToolSet,
};
use serde_json::{Value, json};
use tokio::sync::watch;

// ---------------------------------------------------------------------------------------
// The parts: a PostgreSQL cluster of the test's own, a cuttable TCP proxy, HAProxy.

/// A PostgreSQL cluster in a temporary directory, on its own port (as the `postgres`
/// user when the test runs as root: `initdb` refuses root).
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    as_postgres: bool,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server binaries (/usr/lib/postgresql/*/bin); see .ci/run")
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max_by_key(|p| {
                p.parent()
                    .and_then(|v| v.file_name())
                    .and_then(|v| v.to_str())
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(0)
            })
            .expect("initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().unwrap();
        let as_postgres =
            String::from_utf8_lossy(&Command::new("id").arg("-u").output().unwrap().stdout).trim()
                == "0";
        if as_postgres {
            let owned = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(owned.success());
        }
        let pg = Postgres {
            bin,
            data: dir.path().join("data"),
            port: crate::common::free_port(),
            as_postgres,
            _dir: dir,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                pg.data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=200",
            pg.port,
            pg.data.display()
        );
        let log = pg.log();
        pg.run(
            "pg_ctl",
            &[
                "-D",
                pg.data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        pg
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = command.args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Restarts the server (fast shutdown: open connections are terminated).
    pub fn restart(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                // The new server's output to the log: otherwise it would hold this
                // command's pipes open, and waiting for them would never end.
                "-l",
                self.log().to_str().unwrap(),
                "restart",
            ],
        );
    }

    fn log(&self) -> PathBuf {
        self.data.parent().unwrap().join("postgres.log")
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let data = self.data.to_str().unwrap_or_default().to_owned();
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(program)
                .args(args)
                .output()
        } else {
            Command::new(program).args(args).output()
        };
    }
}

/// A TCP proxy to `target` that can be cut: while cut, every open connection is closed
/// and new ones are accepted and closed at once.
pub struct Toxic {
    pub port: u16,
    cut: watch::Sender<bool>,
}

impl Toxic {
    pub async fn start(target: u16) -> Toxic {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, watching) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if *watching.borrow() {
                    drop(client);
                    continue;
                }
                let mut watching = watching.clone();
                tokio::spawn(async move {
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watching.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Toxic { port, cut }
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

/// HAProxy in front of `replicas`: round robin, no stickiness, a replica taken out when
/// its `/healthz` stops answering; a request whose connection was refused is sent to
/// another replica (nothing of it reached the first).
pub struct Balancer {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Balancer {
    pub fn start(port: u16, replicas: &[u16]) -> Balancer {
        let dir = tempfile::tempdir().unwrap();
        let error = |status: &str, reason: &str| {
            format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nRetry-After: 1\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{{\"error\":\"{reason}\"}}\n"
            )
        };
        for (status, reason) in [
            ("502", "Bad Gateway"),
            ("503", "Service Unavailable"),
            ("504", "Gateway Timeout"),
        ] {
            std::fs::write(
                dir.path().join(format!("{status}.http")),
                error(status, reason),
            )
            .unwrap();
        }
        let servers: String = replicas
            .iter()
            .enumerate()
            .map(|(i, p)| format!("    server r{i} 127.0.0.1:{p} check\n"))
            .collect();
        let errorfiles: String = ["502", "503", "504"]
            .iter()
            .map(|s| {
                format!(
                    "    errorfile {s} {}\n",
                    dir.path().join(format!("{s}.http")).display()
                )
            })
            .collect();
        let config = format!(
            "global\n    maxconn 2000\n\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 60s\n    timeout server 60s\n    timeout http-request 10s\n    retries 3\n    option redispatch 1\n    option forwardfor\n{errorfiles}\nfrontend mandate\n    bind 127.0.0.1:{port}\n    default_backend replicas\n\nbackend replicas\n    balance roundrobin\n    option httpchk\n    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host 127.0.0.1\n    http-check expect status 200\n    default-server inter 250ms fall 2 rise 1\n{servers}"
        );
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (Debian's package) must be installed; see .ci/run");
        Balancer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// The upstream: an MCP server that remembers every call it was sent.

/// `note` (a write), `spend` (a write, under the budgeted mandate) and `wire`
/// (destructive: high impact, held for approval). Each call carries a unique `nonce`.
#[derive(Default)]
pub struct Upstream {
    pub received: Mutex<Vec<(String, Value)>>,
}

#[async_trait]
impl ToolSet for Upstream {
    fn tools(&self) -> Vec<ToolDef> {
        let tool = |name: &str, destructive: bool| ToolDef {
            name: name.to_owned(),
            title: None,
            description: format!("{name} (records its nonce)"),
            input_schema: json!({"type": "object", "properties": {"nonce": {"type": "string"}}, "required": ["nonce"]}),
            annotations: ToolAnnotations {
                read_only_hint: false,
                destructive_hint: destructive,
                idempotent_hint: false,
                open_world_hint: false,
            },
        };
        vec![
            tool("note", false),
            tool("spend", false),
            tool("wire", true),
        ]
    }

    async fn call(
        &self,
        name: &str,
        arguments: Value,
        _ctx: &CallContext,
    ) -> Result<ToolResult, ToolError> {
        self.received
            .lock()
            .unwrap()
            .push((name.to_owned(), arguments.clone()));
        Ok(ToolResult::text(format!("{name} {}", arguments["nonce"])))
    }
}
