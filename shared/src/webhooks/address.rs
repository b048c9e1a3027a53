//! Where a webhook may point (SSRF): `https` only, no credentials in the URL, and a host whose
//! every address is public. Checked when an endpoint is saved and again at each delivery, by
//! the resolver the delivery connects through, so a name that resolves elsewhere later (DNS
//! rebinding) reaches nothing private. `WEBHOOK_ALLOW_LOOPBACK=true` (local development only)
//! also admits loopback addresses, over `http` too.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::config::ConfigSource;

/// Longest URL accepted.
pub const MAX_URL_LENGTH: usize = 2048;

/// How long a name may take to resolve.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// What kind of address an IP is, as far as outbound requests are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Reachable on the internet: allowed.
    Public,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918, IPv6 unique local (fc00::/7), site-local (fec0::/10).
    Private,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// The cloud instance metadata services (169.254.169.254, fd00:ec2::254, 100.100.100.200).
    Metadata,
    /// Carrier-grade NAT, 100.64.0.0/10.
    SharedAddressSpace,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// Documentation, benchmarking, reserved and broadcast ranges, 192.0.0.0/24, Teredo.
    Reserved,
}

/// The class of `ip`; IPv6 forms that embed an IPv4 address (mapped, NAT64, 6to4) are judged
/// by the address they embed.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        AddressClass::Metadata
    } else if a == 127 {
        AddressClass::Loopback
    } else if a == 10 || (a == 172 && (16..32).contains(&b)) || (a == 192 && b == 168) {
        AddressClass::Private
    } else if a == 169 && b == 254 {
        AddressClass::LinkLocal
    } else if a == 100 && (64..128).contains(&b) {
        AddressClass::SharedAddressSpace
    } else if (224..240).contains(&a) {
        AddressClass::Multicast
    } else if a == 0 {
        AddressClass::Unspecified
    } else if a >= 240
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let embedded = |high: u16, low: u16| {
        Ipv4Addr::new(
            (high >> 8) as u8,
            (high & 0xff) as u8,
            (low >> 8) as u8,
            (low & 0xff) as u8,
        )
    };
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they carry.
    if segments[0] == 0x64 && segments[1] == 0xff9b && segments[2..6] == [0, 0, 0, 0] {
        return classify_v4(embedded(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return classify_v4(embedded(segments[1], segments[2]));
    }
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        AddressClass::Metadata
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if segments[0] & 0xfe00 == 0xfc00 || segments[0] & 0xffc0 == 0xfec0 {
        AddressClass::Private
    } else if segments[0] & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if segments[0] & 0xff00 == 0xff00 {
        AddressClass::Multicast
    } else if (segments[0] == 0x2001 && (segments[1] == 0x0db8 || segments[1] == 0))
        || segments[0] == 0x0100
        || segments[..6] == [0, 0, 0, 0, 0, 0]
    {
        // Documentation, Teredo (tunnels to any IPv4), discard-only, IPv4-compatible.
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

/// Why a URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlRefusal {
    /// Not an absolute URL, or over [`MAX_URL_LENGTH`].
    Malformed,
    /// Not `https` (or `http` to loopback where that is allowed).
    NotHttps,
    /// User name or password in the URL.
    Credentials,
    /// A name that is private by definition (`localhost`, `*.internal`, `*.local`, metadata).
    BlockedName,
    /// Some address of the host is not public.
    BlockedAddress,
    /// The host has no address.
    Unresolvable,
}

impl UrlRefusal {
    /// The sentence a 422 gives for the `url` field (never the URL itself).
    pub fn problem(self) -> &'static str {
        match self {
            Self::Malformed => "must be an absolute URL of at most 2048 characters",
            Self::NotHttps => "must use https",
            Self::Credentials => "must not contain a user name or password",
            Self::BlockedName | Self::BlockedAddress => {
                "must not point at a loopback, private, link-local or metadata address"
            }
            Self::Unresolvable => "names a host that does not resolve",
        }
    }
}

/// Resolves a host name to addresses (the system's resolver in production; a table in tests).
pub trait HostResolver: Send + Sync + 'static {
    /// Every address of `host`; empty when it does not resolve.
    fn lookup(
        &self,
        host: String,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = Vec<SocketAddr>> + Send>>;
}

/// The operating system's resolver (`getaddrinfo`), with a timeout.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl HostResolver for SystemResolver {
    fn lookup(
        &self,
        host: String,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = Vec<SocketAddr>> + Send>> {
        Box::pin(async move {
            match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port))).await
            {
                Ok(Ok(addresses)) => addresses.collect(),
                _ => Vec::new(),
            }
        })
    }
}

/// The rules a webhook URL must follow.
#[derive(Debug, Clone, Copy, Default)]
pub struct UrlPolicy {
    allow_loopback: bool,
}

impl UrlPolicy {
    /// A policy; `allow_loopback` only for local development.
    pub fn new(allow_loopback: bool) -> Self {
        Self { allow_loopback }
    }

    /// From `WEBHOOK_ALLOW_LOOPBACK` (`true` admits loopback; anything else does not).
    pub fn from_source(source: &ConfigSource<'_>) -> Self {
        Self::new(
            source
                .optional(crate::config::vars::WEBHOOK_ALLOW_LOOPBACK)
                .is_some_and(|value| value == "true"),
        )
    }

    /// Whether a delivery may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        match classify(ip) {
            AddressClass::Public => true,
            AddressClass::Loopback => self.allow_loopback,
            _ => false,
        }
    }

    /// The URL's form: absolute, `https` (or `http` where loopback is allowed: its addresses
    /// are checked by [`UrlPolicy::check`]), no credentials, no private-by-name host.
    pub fn parse(&self, text: &str) -> Result<Url, UrlRefusal> {
        if text.len() > MAX_URL_LENGTH {
            return Err(UrlRefusal::Malformed);
        }
        let url = Url::parse(text).map_err(|_| UrlRefusal::Malformed)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_loopback => {}
            _ => return Err(UrlRefusal::NotHttps),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRefusal::Credentials);
        }
        match url.host() {
            None => Err(UrlRefusal::Malformed),
            Some(url::Host::Domain(name)) if self.blocked_name(name) => {
                Err(UrlRefusal::BlockedName)
            }
            Some(_) => Ok(url),
        }
    }

    fn blocked_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let localhost = name == "localhost" || name.ends_with(".localhost");
        if localhost {
            return !self.allow_loopback;
        }
        name.ends_with(".internal")
            || name.ends_with(".local")
            || name == "metadata"
            || name == "instance-data"
            || !name.contains('.')
    }

    /// Resolves the URL's host and checks every address; `http` only when each one is
    /// loopback. The addresses a delivery may connect to.
    pub async fn check(
        &self,
        url: &Url,
        resolver: &dyn HostResolver,
    ) -> Result<Vec<SocketAddr>, UrlRefusal> {
        let port = url.port_or_known_default().ok_or(UrlRefusal::Malformed)?;
        let addresses = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
            Some(url::Host::Domain(name)) => resolver.lookup(name.to_owned(), port).await,
            None => return Err(UrlRefusal::Malformed),
        };
        if addresses.is_empty() {
            return Err(UrlRefusal::Unresolvable);
        }
        if !addresses.iter().all(|address| self.allows(address.ip())) {
            return Err(UrlRefusal::BlockedAddress);
        }
        if url.scheme() == "http"
            && !addresses
                .iter()
                .all(|address| classify(address.ip()) == AddressClass::Loopback)
        {
            return Err(UrlRefusal::NotHttps);
        }
        Ok(addresses)
    }
}

/// The resolver the delivery client connects through: every address of every name is checked
/// at connection time, so what was checked is what is connected to.
pub struct CheckedResolver {
    policy: UrlPolicy,
    resolver: Arc<dyn HostResolver>,
}

impl CheckedResolver {
    /// Checks `resolver`'s answers with `policy`.
    pub fn new(policy: UrlPolicy, resolver: Arc<dyn HostResolver>) -> Self {
        Self { policy, resolver }
    }
}

/// The error a connection gets when a name resolves to a refused address.
#[derive(Debug, thiserror::Error)]
#[error("the host resolves to a blocked address")]
pub struct BlockedAddress;

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        let lookup = self.resolver.lookup(name.as_str().to_owned(), 0);
        Box::pin(async move {
            let addresses = lookup.await;
            if addresses.is_empty() {
                return Err("the host does not resolve".into());
            }
            if !addresses.iter().all(|address| policy.allows(address.ip())) {
                return Err(Box::new(BlockedAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Table(HashMap<&'static str, Vec<IpAddr>>);

    impl HostResolver for Table {
        fn lookup(
            &self,
            host: String,
            port: u16,
        ) -> Pin<Box<dyn Future<Output = Vec<SocketAddr>> + Send>> {
            let found: Vec<SocketAddr> = self
                .0
                .get(host.as_str())
                .into_iter()
                .flatten()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect();
            Box::pin(async move { found })
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn every_address_class_is_recognised_in_both_families() {
        let table = [
            ("93.184.215.14", AddressClass::Public),
            (
                "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
                AddressClass::Public,
            ),
            ("127.0.0.1", AddressClass::Loopback),
            ("127.8.9.10", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("fd12:3456::1", AddressClass::Private),
            ("fc00::1", AddressClass::Private),
            ("169.254.1.1", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("169.254.169.254", AddressClass::Metadata),
            ("fd00:ec2::254", AddressClass::Metadata),
            ("100.100.100.200", AddressClass::Metadata),
            ("100.64.0.1", AddressClass::SharedAddressSpace),
            ("100.127.255.254", AddressClass::SharedAddressSpace),
            ("224.0.0.1", AddressClass::Multicast),
            ("ff02::1", AddressClass::Multicast),
            ("0.0.0.0", AddressClass::Unspecified),
            ("::", AddressClass::Unspecified),
            ("255.255.255.255", AddressClass::Reserved),
            ("192.0.2.1", AddressClass::Reserved),
            ("2001:db8::1", AddressClass::Reserved),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                AddressClass::Reserved,
            ),
            // IPv4 inside IPv6 is judged by the IPv4 address.
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:10.0.0.1", AddressClass::Private),
            ("::ffff:169.254.169.254", AddressClass::Metadata),
            ("64:ff9b::a9fe:a9fe", AddressClass::Metadata),
            ("2002:c0a8:0101::1", AddressClass::Private),
            ("::ffff:93.184.215.14", AddressClass::Public),
            // Edges just outside the private ranges.
            ("172.32.0.1", AddressClass::Public),
            ("100.128.0.1", AddressClass::Public),
            ("11.0.0.1", AddressClass::Public),
        ];
        for (text, class) in table {
            assert_eq!(classify(ip(text)), class, "{text}");
        }
    }

    #[test]
    fn only_https_without_credentials_or_private_names_parses() {
        let policy = UrlPolicy::new(false);
        assert!(policy.parse("https://hooks.example.com/pipewise").is_ok());
        let refused = [
            ("http://hooks.example.com/", UrlRefusal::NotHttps),
            ("ftp://hooks.example.com/", UrlRefusal::NotHttps),
            (
                "https://user:pw@hooks.example.com/",
                UrlRefusal::Credentials,
            ),
            ("https://localhost/", UrlRefusal::BlockedName),
            ("https://metadata.google.internal/", UrlRefusal::BlockedName),
            ("https://printer.local/", UrlRefusal::BlockedName),
            ("https://intranet/", UrlRefusal::BlockedName),
            ("not a url", UrlRefusal::Malformed),
            ("/relative", UrlRefusal::Malformed),
        ];
        for (text, refusal) in refused {
            assert_eq!(policy.parse(text).unwrap_err(), refusal, "{text}");
        }
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_LENGTH));
        assert_eq!(policy.parse(&long).unwrap_err(), UrlRefusal::Malformed);
    }

    #[tokio::test]
    async fn every_resolved_address_must_be_public() {
        let resolver = Table(HashMap::from([
            ("hooks.example.com", vec![ip("93.184.215.14")]),
            ("rebound.example.com", vec![ip("10.0.0.5")]),
            (
                "mixed.example.com",
                vec![ip("93.184.215.14"), ip("fd00::5")],
            ),
            ("six.example.com", vec![ip("::ffff:169.254.169.254")]),
        ]));
        let policy = UrlPolicy::new(false);
        let check = |text: &str| {
            let url = policy.parse(text).unwrap();
            let resolver = &resolver;
            async move { policy.check(&url, resolver).await }
        };
        assert_eq!(check("https://hooks.example.com/x").await.unwrap().len(), 1);
        for text in [
            "https://rebound.example.com/",
            "https://mixed.example.com/",
            "https://six.example.com/",
            "https://10.0.0.1/",
            "https://[::1]/",
            "https://127.0.0.1:8443/",
            "https://169.254.169.254/latest/meta-data/",
            "https://[fd00:ec2::254]/",
            "https://2130706433/",
        ] {
            assert_eq!(
                check(text).await.unwrap_err(),
                UrlRefusal::BlockedAddress,
                "{text}"
            );
        }
        assert_eq!(
            check("https://nowhere.example.com/").await.unwrap_err(),
            UrlRefusal::Unresolvable
        );
    }

    #[tokio::test]
    async fn loopback_is_admitted_only_where_allowed_and_http_only_to_loopback() {
        let resolver = Table(HashMap::from([(
            "hooks.example.com",
            vec![ip("93.184.215.14")],
        )]));
        let local = UrlPolicy::new(true);
        let url = local.parse("http://127.0.0.1:9000/hook").unwrap();
        assert!(local.check(&url, &resolver).await.is_ok());
        let url = local.parse("http://hooks.example.com/").unwrap();
        assert_eq!(
            local.check(&url, &resolver).await.unwrap_err(),
            UrlRefusal::NotHttps
        );
        let url = local.parse("https://10.0.0.1/").unwrap();
        assert_eq!(
            local.check(&url, &resolver).await.unwrap_err(),
            UrlRefusal::BlockedAddress,
            "loopback allowed does not allow private"
        );
        let strict = UrlPolicy::new(false);
        assert_eq!(
            strict.parse("http://127.0.0.1:9000/hook").unwrap_err(),
            UrlRefusal::NotHttps
        );
        assert!(!strict.allows(ip("127.0.0.1")));
        assert!(local.allows(ip("127.0.0.1")));
    }

    #[tokio::test]
    async fn the_connection_resolver_refuses_a_name_that_rebinds_to_a_private_address() {
        use reqwest::dns::Resolve;
        let resolver = CheckedResolver::new(
            UrlPolicy::new(false),
            Arc::new(Table(HashMap::from([
                ("hooks.example.com", vec![ip("93.184.215.14")]),
                ("rebound.example.com", vec![ip("192.168.0.9")]),
            ]))),
        );
        let good = resolver
            .resolve("hooks.example.com".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(good.count(), 1);
        let error = resolver
            .resolve("rebound.example.com".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(error.downcast_ref::<BlockedAddress>().is_some());
    }
}
