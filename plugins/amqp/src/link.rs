//! One connection to the broker: a channel in confirm mode, on which the
//! exchange is declared (durable) before anything is published. A link is
//! never repaired: when anything goes wrong the publisher drops it and opens
//! a new one, which redeclares everything.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, PublisherConfirm};

use crate::config::Settings;
use crate::message::Message;

pub struct Link {
    connection: Connection,
    channel: Channel,
    exchange: lapin::types::ShortString,
    notices: Pin<Box<dyn Stream<Item = lapin::Event> + Send>>,
}

/// Something the broker or the connection reports while the link is up.
pub enum Notice {
    /// The link is unusable; the reason is fit for the log.
    Lost(String),
    /// The broker stopped accepting messages (e.g. it is low on memory or
    /// disk); publishing waits until it resumes.
    Blocked(String),
    Unblocked,
}

impl Link {
    /// Connects, enables publisher confirms and declares the exchange.
    /// `client_name` is shown in the broker's list of connections.
    pub async fn open(settings: &Settings, client_name: &str) -> Result<Link, lapin::Error> {
        let properties =
            ConnectionProperties::default().with_connection_name(client_name.to_owned().into());
        let connection = Connection::connect_uri(settings.broker.uri(), properties).await?;
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
                settings.exchange.clone(),
                settings.exchange_type.kind(),
                durable,
                FieldTable::default(),
            )
            .await?;
        Ok(Link {
            connection,
            channel,
            exchange: settings.exchange.clone(),
            notices,
        })
    }

    /// Hands a message to the connection; the returned future resolves once
    /// the broker confirmed (or refused) it. (`&mut` only because the
    /// notice stream is not `Sync`.)
    pub async fn publish(&mut self, message: Message) -> Result<PublisherConfirm, lapin::Error> {
        self.channel
            .basic_publish(
                self.exchange.clone(),
                message.routing_key,
                BasicPublishOptions::default(),
                &message.body,
                message.properties,
            )
            .await
    }

    /// The next thing worth knowing about the connection.
    pub async fn notice(&mut self) -> Notice {
        while let Some(event) = self.notices.next().await {
            match event {
                lapin::Event::Error(e) => return Notice::Lost(e.to_string()),
                lapin::Event::ConnectionBlocked(reason) => return Notice::Blocked(reason),
                lapin::Event::ConnectionUnblocked => return Notice::Unblocked,
                _ => {}
            }
        }
        Notice::Lost("the connection closed".to_owned())
    }

    /// Closes the connection politely; nothing is left to confirm.
    pub async fn close(self) {
        let _ = self.channel.close(200, "done".into()).await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}
