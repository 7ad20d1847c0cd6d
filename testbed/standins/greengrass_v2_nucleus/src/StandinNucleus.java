// Stand-in for the AWS IoT Greengrass V2 nucleus (lib/Greengrass.jar).
// edgeml.greengrass TEST EQUIPMENT, never shipped as the product: it talks to no cloud and listens on
// no port (simulated devices share the host's network). It accepts the installer options the
// greengrass_v2_nucleus role uses and refuses to start on what the real nucleus would refuse.
//
// java -Droot=/greengrass/v2 -Dlog.store=FILE -jar lib/Greengrass.jar --init-config config.yaml
//      --component-default-user ggc_user:ggc_group --setup-system-service true
//   installer: validates the config, copies this distribution under <root>/packages and
//   <root>/alts/current, writes <root>/config/effectiveConfig.yaml and (service true)
//   /etc/systemd/system/greengrass.service, then daemon-reload, unmask, start, enable.
// <root>/alts/current/distro/bin/loader  (what the unit runs)
//   nucleus: reads <root>/config/effectiveConfig.yaml, refuses bad config or a key that does not
//   belong to the certificate, else stays up until SIGTERM.

import java.io.IOException;
import java.io.InputStream;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.Signature;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public final class StandinNucleus {
    static final String NUCLEUS = "aws.greengrass.Nucleus";
    static final String UNIT_PATH = "/etc/systemd/system/greengrass.service";
    static final Pattern THING_NAME = Pattern.compile("[a-zA-Z0-9:_-]{1,128}");
    static final Pattern REGION = Pattern.compile("[a-z]{2}(-[a-z]+)+-[0-9]");
    static final Pattern HOST = Pattern.compile(
        "(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*");
    static final Pattern ROLE_ALIAS = Pattern.compile("[\\w=,@-]{1,128}");

    static Path logFile;

    /** A reason not to start; printed and turned into exit status 1. */
    static final class Refusal extends Exception {
        Refusal(String message) {
            super(message);
        }
    }

    public static void main(String[] args) {
        int status;
        try {
            status = run(args);
        } catch (Refusal refusal) {
            log("ERROR", "refusing to start: " + refusal.getMessage());
            status = 1;
        } catch (IOException | RuntimeException | InterruptedException e) {
            log("ERROR", "refusing to start: " + e);
            status = 1;
        }
        System.exit(status);
    }

    static void log(String level, String message) {
        String line = Instant.now() + " [" + level + "] (standin-nucleus) " + message;
        System.err.println(line);
        if (logFile != null) {
            try {
                Files.createDirectories(logFile.getParent());
                Files.write(logFile, (line + "\n").getBytes(StandardCharsets.UTF_8),
                    StandardOpenOption.CREATE, StandardOpenOption.APPEND);
            } catch (IOException ignored) {
                // The journal still has the line.
            }
        }
    }

    static String ownVersion() throws IOException {
        try (InputStream in = StandinNucleus.class.getResourceAsStream("/standin-version.txt")) {
            if (in == null) {
                throw new IOException("standin-version.txt missing from the jar");
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8).trim();
        }
    }

    // ---------------------------------------------------------------- command line

    static int run(String[] args) throws Refusal, IOException, InterruptedException {
        String initConfig = null;
        String defaultUser = null;
        boolean setupService = false;
        boolean start = true;
        String rootOption = null;
        for (int i = 0; i < args.length; i++) {
            String option = args[i];
            if (i + 1 >= args.length) {
                throw new Refusal("option " + option + " needs a value");
            }
            String value = args[++i];
            switch (option) {
                case "--init-config":
                case "-i":
                    initConfig = value;
                    break;
                case "--component-default-user":
                case "-u":
                    defaultUser = value;
                    break;
                case "--setup-system-service":
                case "-ss":
                    setupService = bool(option, value);
                    break;
                case "--start":
                case "-s":
                    start = bool(option, value);
                    break;
                case "--root":
                case "-r":
                    rootOption = value;
                    break;
                case "--provision":
                case "-p":
                    if (bool(option, value)) {
                        throw new Refusal("--provision true is not supported by the stand-in (manual provisioning only)");
                    }
                    break;
                default:
                    throw new Refusal("unsupported option " + option);
            }
        }
        String rootText = rootOption != null ? rootOption : System.getProperty("root");
        if (rootText == null || !rootText.startsWith("/")) {
            throw new Refusal("the root folder must be an absolute path given as -Droot=... or --root; got " + rootText);
        }
        Path root = Paths.get(rootText).normalize();
        if ("FILE".equals(System.getProperty("log.store"))) {
            logFile = root.resolve("logs").resolve("greengrass.log");
        }
        String version = ownVersion();
        if (initConfig != null) {
            return install(root, Paths.get(initConfig), defaultUser, setupService, start, version);
        }
        if (defaultUser != null || setupService) {
            throw new Refusal("--component-default-user and --setup-system-service true need --init-config");
        }
        return launch(root, version);
    }

    static boolean bool(String option, String value) throws Refusal {
        if ("true".equals(value)) {
            return true;
        }
        if ("false".equals(value)) {
            return false;
        }
        throw new Refusal(option + " takes true or false; got " + value);
    }

    // ---------------------------------------------------------------- installer

    static int install(Path root, Path initConfig, String defaultUser, boolean setupService, boolean start,
            String version) throws Refusal, IOException, InterruptedException {
        Map<String, Object> config = readConfig(initConfig);
        validate(initConfig, config, root, version);
        if (defaultUser != null) {
            checkDefaultUser(defaultUser);
        }
        Path distro = distribution();
        Path installed = root.resolve("packages/artifacts-unarchived").resolve(NUCLEUS).resolve(version)
            .resolve("aws.greengrass.nucleus");
        if (!distro.equals(installed)) {
            deleteTree(installed);
            copyTree(distro, installed);
        }
        Path init = root.resolve("alts/init");
        Files.createDirectories(init);
        replaceSymlink(init.resolve("distro"), installed);
        replaceSymlink(root.resolve("alts/current"), init);
        List<String> jvmOptions = new ArrayList<>();
        for (String argument : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (!argument.startsWith("-Droot=")) {
                jvmOptions.add(argument);
            }
        }
        Files.write(init.resolve("launch.params"), (String.join(" ", jvmOptions) + "\n").getBytes(StandardCharsets.UTF_8));

        Map<String, Object> effective = config;
        if (defaultUser != null) {
            Map<String, Object> runWithDefault = new LinkedHashMap<>();
            runWithDefault.put("posixUser", defaultUser);
            map(map(map(effective, "services"), NUCLEUS), "configuration").put("runWithDefault", runWithDefault);
        }
        Path configDir = root.resolve("config");
        Files.createDirectories(configDir);
        Path effectiveFile = configDir.resolve("effectiveConfig.yaml");
        Path written = configDir.resolve("effectiveConfig.yaml.new");
        Files.write(written, Yaml.write(effective).getBytes(StandardCharsets.UTF_8));
        Files.move(written, effectiveFile, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        Files.createDirectories(root.resolve("logs"));
        log("INFO", "installed nucleus " + version + " under " + root + " with configuration from " + initConfig);

        if (setupService) {
            String template = new String(Files.readAllBytes(installed.resolve("bin/greengrass.service.template")),
                StandardCharsets.UTF_8);
            String unit = template
                .replace("REPLACE_WITH_GG_LOADER_FILE", root.resolve("alts/current/distro/bin/loader").toString())
                .replace("REPLACE_WITH_GG_LOADER_PID_FILE", root.resolve("alts/loader.pid").toString());
            Files.write(Paths.get(UNIT_PATH), unit.getBytes(StandardCharsets.UTF_8));
            systemctl("daemon-reload");
            systemctl("unmask", "greengrass.service");
            if (start) {
                systemctl("start", "greengrass.service");
            }
            systemctl("enable", "greengrass.service");
            log("INFO", "Successfully set up Nucleus as a system service");
            return 0;
        }
        if (!start) {
            log("INFO", "installed; not started (--start false)");
            return 0;
        }
        return launch(root, version);
    }

    static Path distribution() throws Refusal {
        try {
            Path jar = Paths.get(StandinNucleus.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            return jar.toAbsolutePath().getParent().getParent();
        } catch (java.net.URISyntaxException e) {
            throw new Refusal("cannot tell where Greengrass.jar is: " + e);
        }
    }

    static void checkDefaultUser(String defaultUser) throws Refusal, IOException {
        String[] parts = defaultUser.split(":", -1);
        if (parts.length > 2 || parts[0].isEmpty() || (parts.length == 2 && parts[1].isEmpty())) {
            throw new Refusal("--component-default-user must be user or user:group; got " + defaultUser);
        }
        if (!databaseHas("/etc/passwd", parts[0])) {
            throw new Refusal("--component-default-user: user " + parts[0] + " does not exist");
        }
        if (parts.length == 2 && !databaseHas("/etc/group", parts[1])) {
            throw new Refusal("--component-default-user: group " + parts[1] + " does not exist");
        }
    }

    static boolean databaseHas(String file, String name) throws IOException {
        for (String line : Files.readAllLines(Paths.get(file), StandardCharsets.UTF_8)) {
            if (line.startsWith(name + ":")) {
                return true;
            }
        }
        return false;
    }

    static void systemctl(String... args) throws Refusal, IOException, InterruptedException {
        List<String> command = new ArrayList<>();
        command.add("systemctl");
        command.addAll(Arrays.asList(args));
        Process process = new ProcessBuilder(command).inheritIO().start();
        int status = process.waitFor();
        if (status != 0) {
            throw new Refusal(String.join(" ", command) + " failed with exit status " + status);
        }
    }

    static void replaceSymlink(Path link, Path target) throws IOException {
        Files.createDirectories(link.getParent());
        Files.deleteIfExists(link);
        Files.createSymbolicLink(link, target);
    }

    static void deleteTree(Path top) throws IOException {
        if (!Files.exists(top, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        Files.walkFileTree(top, new SimpleFileVisitor<Path>() {
            @Override
            public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) throws IOException {
                Files.delete(file);
                return FileVisitResult.CONTINUE;
            }

            @Override
            public FileVisitResult postVisitDirectory(Path dir, IOException exc) throws IOException {
                Files.delete(dir);
                return FileVisitResult.CONTINUE;
            }
        });
    }

    static void copyTree(Path from, Path to) throws IOException {
        Files.walkFileTree(from, new SimpleFileVisitor<Path>() {
            @Override
            public FileVisitResult preVisitDirectory(Path dir, BasicFileAttributes attrs) throws IOException {
                Files.createDirectories(to.resolve(from.relativize(dir).toString()));
                return FileVisitResult.CONTINUE;
            }

            @Override
            public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) throws IOException {
                Files.copy(file, to.resolve(from.relativize(file).toString()), StandardCopyOption.COPY_ATTRIBUTES);
                return FileVisitResult.CONTINUE;
            }
        });
    }

    // ---------------------------------------------------------------- nucleus

    static int launch(Path root, String version) throws Refusal, IOException, InterruptedException {
        Path effectiveFile = root.resolve("config/effectiveConfig.yaml");
        if (!Files.isRegularFile(effectiveFile)) {
            throw new Refusal("no configuration at " + effectiveFile + ": install first with --init-config");
        }
        Map<String, Object> config = readConfig(effectiveFile);
        validate(effectiveFile, config, root, version);
        Object posixUser = path(config, "services." + NUCLEUS + ".configuration.runWithDefault.posixUser");
        if (posixUser instanceof String) {
            checkDefaultUser((String) posixUser);
        }
        Runtime.getRuntime().addShutdownHook(new Thread(() -> log("INFO", "stopping: shutdown requested")));
        log("INFO", "Launched Nucleus successfully. thing " + path(config, "system.thingName") + ", version " + version
            + ", region " + path(config, "services." + NUCLEUS + ".configuration.awsRegion") + " (stand-in)");
        return runAgent(root, config);
    }

    /** The cloud side (agent/nucleus_agent.py beside this jar): follows deployments; gets the config as JSON. */
    static int runAgent(Path root, Map<String, Object> config) throws IOException, InterruptedException {
        Path agent;
        try {
            agent = Paths.get(StandinNucleus.class.getProtectionDomain().getCodeSource().getLocation().toURI())
                .getParent().resolve("agent/nucleus_agent.py");
        } catch (java.net.URISyntaxException e) {
            throw new IOException(e);
        }
        ProcessBuilder builder = new ProcessBuilder("python3", agent.toString(), root.toString());
        builder.redirectOutput(ProcessBuilder.Redirect.INHERIT).redirectError(ProcessBuilder.Redirect.INHERIT);
        Process process = builder.start();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            process.destroy();  // SIGTERM: the agent stops its components (Shutdown steps) and exits
            try {
                process.waitFor(30, java.util.concurrent.TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }));
        try (java.io.OutputStream in = process.getOutputStream()) {
            in.write(toJson(config).getBytes(StandardCharsets.UTF_8));
        }
        int status = process.waitFor();
        log(status == 0 ? "INFO" : "ERROR", "the deployment agent exited with status " + status);
        return status;
    }

    static String toJson(Object value) {
        if (value == null) {
            return "null";
        }
        if (value instanceof Map) {
            StringBuilder out = new StringBuilder("{");
            for (Map.Entry<?, ?> entry : ((Map<?, ?>) value).entrySet()) {
                out.append(out.length() > 1 ? "," : "").append(toJson(String.valueOf(entry.getKey())))
                    .append(':').append(toJson(entry.getValue()));
            }
            return out.append('}').toString();
        }
        if (value instanceof List) {
            StringBuilder out = new StringBuilder("[");
            for (Object item : (List<?>) value) {
                out.append(out.length() > 1 ? "," : "").append(toJson(item));
            }
            return out.append(']').toString();
        }
        if (value instanceof Boolean || value instanceof Number) {
            return value.toString();
        }
        StringBuilder out = new StringBuilder("\"");
        for (char c : value.toString().toCharArray()) {
            if (c == '"' || c == '\\') {
                out.append('\\').append(c);
            } else if (c < 0x20) {
                out.append(String.format("\\u%04x", (int) c));
            } else {
                out.append(c);
            }
        }
        return out.append('"').toString();
    }

    // ---------------------------------------------------------------- configuration

    static Map<String, Object> readConfig(Path file) throws Refusal {
        try {
            return Yaml.parse(new String(Files.readAllBytes(file), StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new Refusal(file + ": cannot be read: " + e.getMessage());
        } catch (IllegalArgumentException e) {
            throw new Refusal(file + ": not valid YAML: " + e.getMessage());
        }
    }

    static Object path(Map<String, Object> config, String dotted) {
        Object node = config;
        // The nucleus's own key has dots in it: walk by known segments.
        String rest = dotted;
        while (!rest.isEmpty()) {
            if (!(node instanceof Map)) {
                return null;
            }
            String segment;
            if (rest.startsWith(NUCLEUS)) {
                segment = NUCLEUS;
            } else {
                int dot = rest.indexOf('.');
                segment = dot < 0 ? rest : rest.substring(0, dot);
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> map = (Map<String, Object>) node;
            if (!map.containsKey(segment)) {
                return null;
            }
            node = map.get(segment);
            rest = rest.length() > segment.length() ? rest.substring(segment.length() + 1) : "";
        }
        return node;
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> map(Map<String, Object> parent, String key) {
        return (Map<String, Object>) parent.computeIfAbsent(key, k -> new LinkedHashMap<String, Object>());
    }

    static String text(Map<String, Object> config, String dotted, List<String> problems) {
        Object value = path(config, dotted);
        if (value == null) {
            problems.add(dotted + ": missing");
            return null;
        }
        if (!(value instanceof String)) {
            problems.add(dotted + ": expected a string, got " + Yaml.typeName(value));
            return null;
        }
        if (((String) value).isEmpty()) {
            problems.add(dotted + ": empty");
            return null;
        }
        return (String) value;
    }

    static void validate(Path source, Map<String, Object> config, Path root, String version) throws Refusal {
        List<String> problems = new ArrayList<>();
        String cert = text(config, "system.certificateFilePath", problems);
        String key = text(config, "system.privateKeyPath", problems);
        String ca = text(config, "system.rootCaPath", problems);
        String rootpath = text(config, "system.rootpath", problems);
        String thing = text(config, "system.thingName", problems);
        String nucleus = "services." + NUCLEUS;
        String componentType = text(config, nucleus + ".componentType", problems);
        String configVersion = text(config, nucleus + ".version", problems);
        String region = text(config, nucleus + ".configuration.awsRegion", problems);
        String roleAlias = text(config, nucleus + ".configuration.iotRoleAlias", problems);
        String dataEndpoint = text(config, nucleus + ".configuration.iotDataEndpoint", problems);
        String credEndpoint = text(config, nucleus + ".configuration.iotCredEndpoint", problems);
        if (rootpath != null && !Paths.get(rootpath).normalize().equals(root)) {
            problems.add("system.rootpath: " + rootpath + " is not the root this nucleus runs in (" + root + ")");
        }
        if (thing != null && !THING_NAME.matcher(thing).matches()) {
            problems.add("system.thingName: not an AWS IoT thing name: " + thing);
        }
        if (componentType != null && !"NUCLEUS".equals(componentType)) {
            problems.add(nucleus + ".componentType: expected NUCLEUS, got " + componentType);
        }
        if (configVersion != null && !version.equals(configVersion)) {
            problems.add(nucleus + ".version: " + configVersion + " is not this nucleus's version " + version);
        }
        if (region != null && !REGION.matcher(region).matches()) {
            problems.add(nucleus + ".configuration.awsRegion: not an AWS region: " + region);
        }
        if (roleAlias != null && !ROLE_ALIAS.matcher(roleAlias).matches()) {
            problems.add(nucleus + ".configuration.iotRoleAlias: not a role alias name: " + roleAlias);
        }
        if (dataEndpoint != null && !HOST.matcher(dataEndpoint).matches()) {
            problems.add(nucleus + ".configuration.iotDataEndpoint: not a host name: " + dataEndpoint);
        }
        if (credEndpoint != null && !HOST.matcher(credEndpoint).matches()) {
            problems.add(nucleus + ".configuration.iotCredEndpoint: not a host name: " + credEndpoint);
        }
        String[][] files = {{"system.certificateFilePath", cert}, {"system.privateKeyPath", key}, {"system.rootCaPath", ca}};
        for (String[] file : files) {
            if (file[1] != null && !Files.isRegularFile(Paths.get(file[1]))) {
                problems.add(file[0] + ": " + file[1] + " does not exist");
            }
        }
        if (!problems.isEmpty()) {
            throw new Refusal(source + ": " + String.join("; ", problems));
        }
        Credentials.check(Paths.get(cert), Paths.get(key), Paths.get(ca));
    }

    // ---------------------------------------------------------------- credentials

    static final class Credentials {
        static final Pattern PEM = Pattern.compile("-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \\1-----", Pattern.DOTALL);
        // AlgorithmIdentifier rsaEncryption, NULL
        static final byte[] RSA_ALGORITHM = {0x30, 0x0d, 0x06, 0x09, 0x2a, (byte) 0x86, 0x48, (byte) 0x86, (byte) 0xf7, 0x0d,
            0x01, 0x01, 0x01, 0x05, 0x00};
        // OID id-ecPublicKey
        static final byte[] EC_PUBLIC_KEY_OID = {0x06, 0x07, 0x2a, (byte) 0x86, 0x48, (byte) 0xce, 0x3d, 0x02, 0x01};

        static void check(Path certPath, Path keyPath, Path caPath) throws Refusal {
            X509Certificate cert = certificate(certPath, "system.certificateFilePath");
            certificate(caPath, "system.rootCaPath");
            PublicKey certKey = cert.getPublicKey();
            PrivateKey key = privateKey(keyPath, certKey);
            if (!key.getAlgorithm().equals(certKey.getAlgorithm())) {
                throw new Refusal("system.privateKeyPath: " + keyPath + " is an " + key.getAlgorithm()
                    + " key but the certificate " + certPath + " holds an " + certKey.getAlgorithm()
                    + " key: the private key does not match the certificate");
            }
            String algorithm = "RSA".equals(key.getAlgorithm()) ? "SHA256withRSA"
                : "EC".equals(key.getAlgorithm()) ? "SHA256withECDSA" : key.getAlgorithm();
            try {
                byte[] challenge = new byte[32];
                new SecureRandom().nextBytes(challenge);
                Signature signer = Signature.getInstance(algorithm);
                signer.initSign(key);
                signer.update(challenge);
                byte[] signature = signer.sign();
                Signature verifier = Signature.getInstance(algorithm);
                verifier.initVerify(certKey);
                verifier.update(challenge);
                if (!verifier.verify(signature)) {
                    throw new Refusal("system.privateKeyPath: the private key " + keyPath
                        + " does not match the certificate " + certPath
                        + " (a signature made with the key does not verify with the certificate's public key)");
                }
            } catch (java.security.GeneralSecurityException e) {
                throw new Refusal("system.privateKeyPath: the private key " + keyPath
                    + " cannot be checked against the certificate " + certPath + ": " + e.getMessage());
            }
        }

        static X509Certificate certificate(Path path, String input) throws Refusal {
            try (InputStream in = Files.newInputStream(path)) {
                return (X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(in);
            } catch (IOException | java.security.cert.CertificateException e) {
                throw new Refusal(input + ": " + path + " is not an X.509 certificate: " + e.getMessage());
            }
        }

        static PrivateKey privateKey(Path path, PublicKey certKey) throws Refusal {
            String text;
            try {
                text = new String(Files.readAllBytes(path), StandardCharsets.US_ASCII);
            } catch (IOException e) {
                throw new Refusal("system.privateKeyPath: " + path + " cannot be read: " + e.getMessage());
            }
            Matcher pem = PEM.matcher(text);
            while (pem.find()) {
                String type = pem.group(1);
                String body = pem.group(2);
                if (type.equals("ENCRYPTED PRIVATE KEY") || body.contains("ENCRYPTED")) {
                    throw new Refusal("system.privateKeyPath: " + path + " is encrypted; the nucleus needs an unencrypted key");
                }
                byte[] der;
                try {
                    der = Base64.getMimeDecoder().decode(body.trim());
                } catch (IllegalArgumentException e) {
                    throw new Refusal("system.privateKeyPath: " + path + " has a damaged PEM block: " + e.getMessage());
                }
                try {
                    switch (type) {
                        case "PRIVATE KEY":
                            return pkcs8(der, certKey.getAlgorithm());
                        case "RSA PRIVATE KEY":
                            return pkcs8(Der.tlv(0x30, Der.concat(new byte[] {0x02, 0x01, 0x00}, RSA_ALGORITHM,
                                Der.tlv(0x04, der))), "RSA");
                        case "EC PRIVATE KEY":
                            byte[] curve = Der.sec1Curve(der);
                            byte[] algorithm = curve != null ? Der.tlv(0x30, Der.concat(EC_PUBLIC_KEY_OID, curve))
                                : Der.firstElement(certKey.getEncoded());
                            return pkcs8(Der.tlv(0x30, Der.concat(new byte[] {0x02, 0x01, 0x00}, algorithm,
                                Der.tlv(0x04, der))), "EC");
                        default:
                            // EC PARAMETERS and other blocks before the key: skip.
                            break;
                    }
                } catch (java.security.GeneralSecurityException | IllegalArgumentException e) {
                    throw new Refusal("system.privateKeyPath: " + path + " is not a readable " + type + ": " + e);
                }
            }
            throw new Refusal("system.privateKeyPath: " + path + " holds no PEM private key");
        }

        static PrivateKey pkcs8(byte[] der, String preferred) throws java.security.GeneralSecurityException {
            java.security.GeneralSecurityException last = null;
            for (String algorithm : new String[] {preferred, "RSA", "EC", "Ed25519"}) {
                try {
                    return KeyFactory.getInstance(algorithm).generatePrivate(new PKCS8EncodedKeySpec(der));
                } catch (java.security.GeneralSecurityException e) {
                    last = e;
                }
            }
            throw last;
        }
    }

    /** Just enough DER to wrap traditional PEM keys (PKCS#1, SEC1) into PKCS#8. */
    static final class Der {
        static byte[] tlv(int tag, byte[] content) {
            int length = content.length;
            byte[] header;
            if (length < 0x80) {
                header = new byte[] {(byte) tag, (byte) length};
            } else if (length < 0x100) {
                header = new byte[] {(byte) tag, (byte) 0x81, (byte) length};
            } else if (length < 0x10000) {
                header = new byte[] {(byte) tag, (byte) 0x82, (byte) (length >> 8), (byte) length};
            } else {
                header = new byte[] {(byte) tag, (byte) 0x83, (byte) (length >> 16), (byte) (length >> 8), (byte) length};
            }
            return concat(header, content);
        }

        static byte[] concat(byte[]... parts) {
            int total = 0;
            for (byte[] part : parts) {
                total += part.length;
            }
            byte[] out = new byte[total];
            int at = 0;
            for (byte[] part : parts) {
                System.arraycopy(part, 0, out, at, part.length);
                at += part.length;
            }
            return out;
        }

        /** {start of content, content length} of the element at offset. */
        static int[] header(byte[] der, int offset) {
            if (offset + 2 > der.length) {
                throw new IllegalArgumentException("truncated DER");
            }
            int length = der[offset + 1] & 0xff;
            int at = offset + 2;
            if (length >= 0x80) {
                int count = length & 0x7f;
                if (count == 0 || count > 3 || at + count > der.length) {
                    throw new IllegalArgumentException("unsupported DER length");
                }
                length = 0;
                for (int i = 0; i < count; i++) {
                    length = (length << 8) | (der[at++] & 0xff);
                }
            }
            if (at + length > der.length) {
                throw new IllegalArgumentException("truncated DER");
            }
            return new int[] {at, length};
        }

        /** The first element inside the SEQUENCE at the start of der, whole. */
        static byte[] firstElement(byte[] der) {
            int[] outer = header(der, 0);
            int[] inner = header(der, outer[0]);
            return Arrays.copyOfRange(der, outer[0], inner[0] + inner[1]);
        }

        /** The named curve OID (whole TLV) from a SEC1 ECPrivateKey's [0] parameters, or null. */
        static byte[] sec1Curve(byte[] der) {
            int[] outer = header(der, 0);
            int at = outer[0];
            int end = outer[0] + outer[1];
            while (at < end) {
                int tag = der[at] & 0xff;
                int[] element = header(der, at);
                if (tag == 0xa0) {
                    int[] oid = header(der, element[0]);
                    return Arrays.copyOfRange(der, element[0], oid[0] + oid[1]);
                }
                at = element[0] + element[1];
            }
            return null;
        }
    }

    // ---------------------------------------------------------------- YAML (the subset config.yaml uses)

    /**
     * Block mappings of scalars: plain, "double" and 'single' quoted; comments; a leading "---".
     * Anything else (sequences, flow collections, anchors, tabs) is refused by name, so a config
     * the stand-in cannot read fails loudly instead of being half-read.
     */
    static final class Yaml {
        static final Pattern INTEGER = Pattern.compile("[-+]?[0-9]+");
        static final Pattern FLOAT = Pattern.compile("[-+]?([0-9]+\\.[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?");

        static final class Level {
            final int indent;
            final Map<String, Object> map;

            Level(int indent, Map<String, Object> map) {
                this.indent = indent;
                this.map = map;
            }
        }

        static Map<String, Object> parse(String text) {
            Map<String, Object> top = new LinkedHashMap<>();
            List<Level> stack = new ArrayList<>();
            Map<String, Object> pendingMap = null;
            String pendingKey = null;
            int pendingIndent = -1;
            String[] lines = text.split("\n", -1);
            boolean seenContent = false;
            for (int number = 1; number <= lines.length; number++) {
                String line = lines[number - 1];
                if (line.endsWith("\r")) {
                    line = line.substring(0, line.length() - 1);
                }
                String stripped = line.trim();
                if (stripped.isEmpty() || stripped.startsWith("#")) {
                    continue;
                }
                if (line.startsWith("---") && !seenContent && stripped.replace("-", "").trim().isEmpty()) {
                    continue;
                }
                if (line.indexOf('\t') >= 0 && line.substring(0, line.length() - line.stripLeading().length()).indexOf('\t') >= 0) {
                    throw new IllegalArgumentException("line " + number + ": tab in indentation");
                }
                seenContent = true;
                int indent = line.length() - line.stripLeading().length();
                if (stripped.startsWith("- ") || stripped.equals("-")) {
                    throw new IllegalArgumentException("line " + number + ": sequences are not expected in config.yaml here");
                }
                String[] keyValue = splitKey(stripped, number);
                if (pendingKey != null) {
                    if (indent > pendingIndent) {
                        Map<String, Object> child = new LinkedHashMap<>();
                        pendingMap.put(pendingKey, child);
                        stack.add(new Level(indent, child));
                    } else {
                        pendingMap.put(pendingKey, null);
                    }
                    pendingKey = null;
                } else if (stack.isEmpty()) {
                    stack.add(new Level(indent, top));
                }
                while (!stack.isEmpty() && indent < stack.get(stack.size() - 1).indent) {
                    stack.remove(stack.size() - 1);
                }
                if (stack.isEmpty() || indent != stack.get(stack.size() - 1).indent) {
                    throw new IllegalArgumentException("line " + number + ": indentation does not match any mapping above");
                }
                Map<String, Object> current = stack.get(stack.size() - 1).map;
                if (current.containsKey(keyValue[0])) {
                    throw new IllegalArgumentException("line " + number + ": duplicate key " + keyValue[0]);
                }
                if (keyValue[1] == null) {
                    pendingMap = current;
                    pendingKey = keyValue[0];
                    pendingIndent = indent;
                    current.put(keyValue[0], null);
                } else {
                    current.put(keyValue[0], scalar(keyValue[1], number));
                }
            }
            if (!seenContent) {
                throw new IllegalArgumentException("empty document");
            }
            return top;
        }

        /** {key, raw value or null when the value is a nested block}. */
        static String[] splitKey(String stripped, int number) {
            String key;
            String rest;
            if (stripped.startsWith("\"") || stripped.startsWith("'")) {
                int[] end = new int[1];
                key = quoted(stripped, 0, end, number);
                rest = stripped.substring(end[0]).stripLeading();
                if (!rest.startsWith(":")) {
                    throw new IllegalArgumentException("line " + number + ": expected ':' after the key");
                }
                rest = rest.substring(1);
            } else {
                int colon = -1;
                for (int i = 0; i < stripped.length(); i++) {
                    if (stripped.charAt(i) == ':' && (i + 1 == stripped.length() || stripped.charAt(i + 1) == ' ')) {
                        colon = i;
                        break;
                    }
                }
                if (colon <= 0) {
                    throw new IllegalArgumentException("line " + number + ": expected 'key: value'");
                }
                key = stripped.substring(0, colon).trim();
                rest = stripped.substring(colon + 1);
            }
            rest = rest.trim();
            if (rest.isEmpty() || rest.startsWith("#")) {
                return new String[] {key, null};
            }
            return new String[] {key, rest};
        }

        static String quoted(String text, int start, int[] end, int number) {
            char quote = text.charAt(start);
            StringBuilder out = new StringBuilder();
            int i = start + 1;
            while (i < text.length()) {
                char c = text.charAt(i);
                if (quote == '\'' && c == '\'') {
                    if (i + 1 < text.length() && text.charAt(i + 1) == '\'') {
                        out.append('\'');
                        i += 2;
                        continue;
                    }
                    end[0] = i + 1;
                    return out.toString();
                }
                if (quote == '"' && c == '"') {
                    end[0] = i + 1;
                    return out.toString();
                }
                if (quote == '"' && c == '\\') {
                    if (i + 1 >= text.length()) {
                        break;
                    }
                    char escaped = text.charAt(i + 1);
                    switch (escaped) {
                        case 'n': out.append('\n'); break;
                        case 't': out.append('\t'); break;
                        case 'r': out.append('\r'); break;
                        case '"': out.append('"'); break;
                        case '\\': out.append('\\'); break;
                        case '/': out.append('/'); break;
                        case 'u':
                            if (i + 6 > text.length()) {
                                throw new IllegalArgumentException("line " + number + ": short \\u escape");
                            }
                            out.append((char) Integer.parseInt(text.substring(i + 2, i + 6), 16));
                            i += 4;
                            break;
                        default:
                            throw new IllegalArgumentException("line " + number + ": unsupported escape \\" + escaped);
                    }
                    i += 2;
                    continue;
                }
                out.append(c);
                i++;
            }
            throw new IllegalArgumentException("line " + number + ": unterminated quoted string");
        }

        static Object scalar(String raw, int number) {
            if (raw.startsWith("\"") || raw.startsWith("'")) {
                int[] end = new int[1];
                String value = quoted(raw, 0, end, number);
                String after = raw.substring(end[0]).trim();
                if (!after.isEmpty() && !after.startsWith("#")) {
                    throw new IllegalArgumentException("line " + number + ": text after a quoted value");
                }
                return value;
            }
            int comment = raw.indexOf(" #");
            String value = comment >= 0 ? raw.substring(0, comment).trim() : raw;
            if (value.equals("{}")) {
                return new LinkedHashMap<String, Object>();
            }
            char first = value.charAt(0);
            if ("[{&*!|>%@`".indexOf(first) >= 0) {
                throw new IllegalArgumentException("line " + number + ": flow collections, anchors, tags and block scalars "
                    + "are not expected in config.yaml here");
            }
            switch (value) {
                case "true": case "True": case "TRUE": return Boolean.TRUE;
                case "false": case "False": case "FALSE": return Boolean.FALSE;
                case "null": case "Null": case "NULL": case "~": return null;
                default: break;
            }
            if (INTEGER.matcher(value).matches()) {
                return Long.valueOf(value);
            }
            if (FLOAT.matcher(value).matches()) {
                return Double.valueOf(value);
            }
            return value;
        }

        static String typeName(Object value) {
            if (value instanceof Map) {
                return "a mapping";
            }
            if (value instanceof Boolean) {
                return "a boolean";
            }
            if (value instanceof Long || value instanceof Double) {
                return "a number";
            }
            return value.getClass().getSimpleName();
        }

        static String write(Map<String, Object> map) {
            StringBuilder out = new StringBuilder("---\n");
            write(map, 0, out);
            return out.toString();
        }

        @SuppressWarnings("unchecked")
        static void write(Map<String, Object> map, int indent, StringBuilder out) {
            String pad = " ".repeat(indent);
            for (Map.Entry<String, Object> entry : map.entrySet()) {
                out.append(pad).append(quote(entry.getKey())).append(':');
                Object value = entry.getValue();
                if (value instanceof Map && !((Map<String, Object>) value).isEmpty()) {
                    out.append('\n');
                    write((Map<String, Object>) value, indent + 2, out);
                } else if (value instanceof Map) {
                    out.append(" {}\n");
                } else if (value instanceof String) {
                    out.append(' ').append(quote((String) value)).append('\n');
                } else {
                    out.append(' ').append(value).append('\n');
                }
            }
        }

        static String quote(String text) {
            StringBuilder out = new StringBuilder("\"");
            for (char c : text.toCharArray()) {
                if (c == '"' || c == '\\') {
                    out.append('\\').append(c);
                } else if (c == '\n') {
                    out.append("\\n");
                } else if (c < 0x20) {
                    out.append(String.format("\\u%04x", (int) c));
                } else {
                    out.append(c);
                }
            }
            return out.append('"').toString();
        }
    }
}
