//! A GraphQL gateway served in the test process on an ephemeral port, in front of a
//! users-query server.

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use userlens_gateway::GatewaySettings;

pub struct InProcessGateway {
    pub addr: SocketAddr,
    pub stop: oneshot::Sender<()>,
    pub task: JoinHandle<()>,
}

impl InProcessGateway {
    /// Serves a gateway with `settings` calling the users-query server at `query`.
    pub async fn start(query: SocketAddr, settings: GatewaySettings) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let settings = GatewaySettings {
            query_url: format!("http://{query}"),
            ..settings
        };
        let task = tokio::spawn(async move {
            userlens_gateway::serve(listener, settings, async move {
                let _ = stopped.await;
            })
            .await
            .expect("gateway serves");
        });
        Self { addr, stop, task }
    }

    /// `POST /graphql` with `query`, under `key` when given; the JSON answer.
    pub async fn graphql(&self, key: Option<&str>, query: &str) -> serde_json::Value {
        let mut request = reqwest::Client::new()
            .post(format!("http://{}/graphql", self.addr))
            .json(&serde_json::json!({ "query": query }));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request
            .send()
            .await
            .expect("graphql request")
            .json()
            .await
            .expect("graphql json")
    }

    /// Stops the gateway and waits for it to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("gateway task");
    }
}
