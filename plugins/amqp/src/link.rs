//! The AMQP side of the bridge: connecting to the broker, and one
//! connection's channel in confirm mode, on which the exchange is declared
//! (durable) before anything is published. A link is never repaired: when
//! anything goes wrong the publishing core drops it and opens a new one,
//! which redeclares everything.

use std::pin::Pin;
use std::sync::Arc;

use eventhost_plugin_api::{Context, Event};
use futures_util::{Stream, StreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation, Connection, ConnectionProperties};
use plugin_support::{Broker, ConnectError, Link, Notice};

use crate::config::Settings;
use crate::message::messages;

/// The broker, as configured.
pub struct Amqp {
    settings: Arc<Settings>,
}

impl Amqp {
    pub fn new(settings: Settings) -> Amqp {
        Amqp {
            settings: Arc::new(settings),
        }
    }

    async fn open(&self, ctx: &Context) -> Result<AmqpLink, lapin::Error> {
        // Shown in the broker's list of connections.
        let client_name = format!("eventhost plugin {}", ctx.name());
        let properties = ConnectionProperties::default().with_connection_name(client_name.into());
        let connection = Connection::connect_uri(self.settings.broker.uri(), properties).await?;
        // Listen before anything can go wrong, or the first error is missed.
        let notices = Box::pin(connection.events_listener());
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                self.settings.exchange.clone(),
                self.settings.exchange_type.kind(),
                durable,
                FieldTable::default(),
            )
            .await?;
        Ok(AmqpLink {
            connection,
            channel,
            settings: self.settings.clone(),
            notices,
        })
    }
}

impl Broker for Amqp {
    type Link = AmqpLink;

    fn describe(&self) -> String {
        self.settings.broker.to_string()
    }

    /// Connects, enables publisher confirms and declares the exchange.
    async fn connect(&self, ctx: &Arc<Context>) -> Result<AmqpLink, ConnectError> {
        // Every AMQP failure may pass: a refused login too, since
        // credentials can be fixed on the broker while the node runs.
        self.open(ctx)
            .await
            .map_err(|e| ConnectError::Retry(e.to_string()))
    }
}

pub struct AmqpLink {
    connection: Connection,
    channel: Channel,
    settings: Arc<Settings>,
    notices: Pin<Box<dyn Stream<Item = lapin::Event> + Send>>,
}

impl Link for AmqpLink {
    async fn publish(
        &mut self,
        event: &Event,
    ) -> Result<Vec<plugin_support::Confirmation>, String> {
        let s = &self.settings;
        let mut confirms = Vec::new();
        for message in messages(event, s.format, &s.routing_keys) {
            let confirm = self
                .channel
                .basic_publish(
                    s.exchange.clone(),
                    message.routing_key,
                    BasicPublishOptions::default(),
                    &message.body,
                    message.properties,
                )
                .await
                .map_err(|e| e.to_string())?;
            confirms.push(Box::pin(async move {
                match confirm.await {
                    Ok(Confirmation::Ack(_)) => Ok(()),
                    Ok(_) => Err("the broker did not accept it (negative confirmation)".to_owned()),
                    Err(e) => Err(e.to_string()),
                }
            }) as plugin_support::Confirmation);
        }
        Ok(confirms)
    }

    async fn notice(&mut self) -> Notice {
        while let Some(event) = self.notices.next().await {
            match event {
                lapin::Event::Error(e) => return Notice::Lost(e.to_string()),
                lapin::Event::ConnectionBlocked(reason) => {
                    return Notice::Warn(format!(
                        "the broker blocked publishing: {reason}; waiting until it resumes"
                    ));
                }
                lapin::Event::ConnectionUnblocked => {
                    return Notice::Info("the broker resumed accepting messages".to_owned());
                }
                _ => {}
            }
        }
        Notice::Lost("the connection closed".to_owned())
    }

    async fn close(self) {
        let _ = self.channel.close(200, "done".into()).await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}
